/* Positive control for callsite_regs (tests/unit/meson.build builds it with -O2
   -fipa-ra -fno-semantic-interposition): callers of pfg_ctl_callee keep a live value in
   a call-clobbered register across the call, because the callee binds locally and GCC
   knows it leaves that register alone. callsite_regs must report it; if it does not,
   its "0 call sites rely on clobberable registers" for the Python images means nothing. */
__attribute__((noinline)) long pfg_ctl_callee(long x) { return x * 3; }

long pfg_ctl_caller(long a, long b, long c, long d) {
  long r = pfg_ctl_callee(a);
  return r + b * c + d;
}
