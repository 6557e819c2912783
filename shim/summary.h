// What the guard says at exit: the summary line (library destructor) and PYFINGUARD_STRICT
// (an on_exit handler registered at load). docs/diagnostics.md.
#pragma once

namespace pfg {

// At exit (library destructor, the exit watch): one summary line when anything was
// reported. Printed again, updated, when a thread stops after it was printed (a park in
// a destructor that runs after the library's own).
void report_exit_summary();

// Has report_exit_summary() run (printed, or found nothing to print) already?
bool summary_printed();

// on_exit handler (registered by strict_register_at_load): with PYFINGUARD_STRICT=N and a
// park the rules report, one line, stdio flushed, then _exit(N).
void report_strict_at_exit(int status, void *);

// Called from the library's constructor, before the program's main() and before
// __libc_start_main registers the loader's destructor pass: with PYFINGUARD_STRICT set
// (and not in secure execution), registers report_strict_at_exit. Nothing at all
// without the variable.
void strict_register_at_load();

}  // namespace pfg
