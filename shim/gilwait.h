// Threads waiting inside CPython's own take_gil() (docs/design.md, "GIL waiters").
//
// A thread that was already waiting for the GIL when finalization began -- through the
// eval loop's periodic switch, which no hook sees, or through a hooked call that passed
// its check while the runtime was RUNNING -- sleeps in pthread_cond_timedwait() on the
// GIL's condition variable and re-checks every 5 ms. What it does when it wakes late is
// CPython's bug, not ours to inherit: 3.10 resets a drop request through the freed
// interpreter before it looks at the finalizing flag (docs/reliability.md K3), and once a
// new runtime starts the flag is clear again, so a first-runtime waiter walks into the
// second runtime with its freed thread state (K1; on <= 3.8 Py_Initialize even destroys
// the old GIL under it: "destroy_gil: ... EBUSY", bpo-9901's comment in pylifecycle.c).
//
// So the guard intercepts the wait itself. CPython's only timed condition wait on Linux
// is take_gil()'s (its locks use semaphores; drop_gil()'s switch wait, its only untimed
// one, is the other side of the same hand-over: gil_switch_wait), so a
// pthread_cond_timedwait() called from Python's own text is a GIL wait. A waiter that
// is not the finalizer parks -- before and after the real wait -- once the runtime is
// past its point of no return, after unlocking the GIL mutex it holds (cond-wait
// semantics), so that the finalizer and a later Py_Initialize find it free. And before
// CPython destroys a condition variable that such waiters use (destroy_gil(): at the end
// of finalization or at the next Py_Initialize, depending on the version), the
// destroying thread wakes them and waits until they have parked.
#pragma once
#include <pthread.h>
#include <ctime>
#include <cstdint>

namespace pfg {

// pthread_cond_timedwait() called from Python text.
int gil_wait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abstime);

// pthread_cond_wait() called from Python text: drop_gil()'s FORCE_SWITCHING wait. It ends
// only when another thread takes the GIL -- the one whose drop request made the holder
// release it. A waiter the guard stopped (or CPython itself ended) after asking never takes
// it, and the holder, often the finalizer, would wait for ever. So the wait runs in 5 ms
// slices, and once any thread has been stopped a slice that times out ends it as a spurious
// wake-up would: drop_gil() does not loop (3.6-3.15), its caller takes the GIL back.
int gil_switch_wait(pthread_cond_t *c, pthread_mutex_t *m);

// pthread_cond_destroy() called from Python text, before the real destroy.
void gil_cond_destroying(pthread_cond_t *c);

// Wakes every thread waiting on a GIL condition variable, so that it re-checks now (the
// drain at the point of no return: window.h).
void gil_wake_waiters();

// pthread_mutex_destroy() called from Python text: false to skip it. Past the point of
// no return CPython's destroy_gil() destroys the GIL mutex while a thread of the old
// runtime may be between the eval loop's drop_gil() and take_gil(), about to lock it
// ("PyMUTEX_LOCK(gil_mutex) failed", 3.6/3.7 embed-reinit, 5 in 2,000 long runs). glibc's
// destroy only marks the mutex invalid (it holds no resources), so the guard leaves it
// valid: that thread then locks it, waits, and parks in gil_wait().
bool gil_mutex_destroy_allowed();

// The image holding [lo, hi) was unmapped: free the slots of condition variables that
// lived in its data (nobody waits on them any more: a waiter would be running code of
// the unmapped image). Slots with waiters counted are left alone.
void gilwait_forget_range(uintptr_t lo, uintptr_t hi);

// fork(): the child has none of the parent's waiters.
void gilwait_atfork_child();

}  // namespace pfg
