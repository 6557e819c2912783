// PEP 788's interpreter guards for CPython 3.6-3.14, backed by the guard's generation and
// phase word (docs/pep788.md is the extension author's page; include/pyfinguard/pep788.h
// the header that calls the functions exported here).
//
// A guard is a count, not an object: the header keeps the interpreter and generation a
// view names, and asks here whether that generation still runs. Acquiring adds one to
// g_guards and then reads g_epoch; the finalizer stores FINALIZING and then reads
// g_guards (both seq_cst: Dekker). Either the acquirer sees FINALIZING and backs out, or
// the finalizer sees the guard and waits for it at Py_FinalizeEx's entry, long before
// CPython's point of no return. A process whose extensions never acquire a guard pays
// one load of a zero counter at Py_FinalizeEx's entry.
#pragma once
#include <cstdint>

namespace pfg {

// Py_FinalizeEx/Py_Finalize/Py_Exit entry (hooks.cc finalizer_enter), after FINALIZING
// is stored: if guards are held, release the caller's GIL, wait until every guard is
// closed, take the GIL back. Nothing at all when no guard is held.
void pep788_finalize_wait();

}  // namespace pfg
