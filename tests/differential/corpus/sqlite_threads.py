# sqlite3 in threads: daemon threads each run inserts and aggregate queries on their own
# database (sqlite3 releases the GIL while a statement runs). The main thread builds a
# table, prints a sum and exits while the daemons are mid-statement.
import sqlite3
from _common import Started, daemon, exit_now

started = Started()


def worker(i):
    db = sqlite3.connect(":memory:")
    db.execute("create table t (k integer primary key, v text)")
    started.add()
    n = 0
    while True:
        db.executemany("insert into t (v) values (?)", [("row %d" % j,) for j in range(200)])
        (count,) = db.execute("select count(*) from t where v like 'row 1%'").fetchone()
        n += 1
        if count != 111 * n:
            raise RuntimeError("count %d after %d batches" % (count, n))
        if n == 50:
            db.execute("delete from t")
            n = 0


for i in range(4):
    daemon(worker, i)
started.wait(4)
db = sqlite3.connect(":memory:")
db.execute("create table m (x integer)")
db.executemany("insert into m values (?)", [(i,) for i in range(1000)])
print("sum", db.execute("select sum(x) from m").fetchone()[0])
db.close()
exit_now(7)
