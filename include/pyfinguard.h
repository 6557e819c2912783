/* pyfinguard: park threads that reach for the GIL after Python finalization.
 *
 * The library is normally loaded with LD_PRELOAD and needs no code changes. This header
 * is for programs and tests that want to ask it what it did. Resolve these functions
 * with dlsym(RTLD_DEFAULT, ...) when the guard may be absent, or link -lpyfinguard.
 */
#ifndef PYFINGUARD_H
#define PYFINGUARD_H

#ifdef __cplusplus
extern "C" {
#endif

#define PYFINGUARD_VERSION_MAJOR 0
#define PYFINGUARD_VERSION_MINOR 1

/* "0.1.0" */
const char *pyfinguard_version(void);

/* Runtime generation: 1 for the first Python runtime, +1 per re-initialization. */
unsigned pyfinguard_generation(void);

/* Number of threads parked so far in this process (a forked child starts at 0). */
unsigned pyfinguard_parked_count(void);

/* 1 if the thread with this kernel thread id (gettid()) is parked, else 0. */
int pyfinguard_is_parked(int tid);

/* Human-readable description of how each intercepted function is covered in this
 * process (interposition, entry patch, or nothing), one line per function, followed by
 * the detected runtime. Writes at most size bytes including the NUL; returns the length
 * the full text needs (like snprintf). */
int pyfinguard_describe(char *buf, unsigned long size);

/* PEP 788 on CPython 3.6-3.14: the guard's side of include/pyfinguard/pep788.h, which
 * extensions include instead (docs/pep788.md). It finds these with dlsym(RTLD_DEFAULT).
 *
 * The generation a view names: the current one while it runs and CPython has not begun
 * to finalize, else 0. */
unsigned long long pyfinguard_view_generation(void);

/* Acquire an interpreter guard on interp (NULL: the main interpreter) of generation gen
 * (0: the current one): 1 if held (Py_FinalizeEx then waits, at its entry, until it is
 * released), 0 if finalization has begun, the generation is over or the interpreter was
 * ended with Py_EndInterpreter. */
int pyfinguard_guard_acquire(void *interp, unsigned long long gen);

/* Release one guard acquired with pyfinguard_guard_acquire. */
void pyfinguard_guard_release(void);

/* Guards held now. */
int pyfinguard_guards_held(void);

#ifdef __cplusplus
}
#endif
#endif
