/* An empty shared object. Preloaded, it costs a start-up only what LD_PRELOAD of anything
 * costs: ld.so opens, maps and relocates one more object. bench.py's start-up table
 * reports it beside the guard as the floor no preloaded library goes below. Never used
 * outside the benchmark. */
void pfg_bench_empty_preload(void) {}
