// The decoder of the x86-64 patcher (zydis.h).
#include "zydis.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

#ifndef PFG_ZYDIS_SONAME  // meson.build finds the soname and directory of the -dev package's library
#define PFG_ZYDIS_SONAME "libZydis.so"
#endif

namespace pfg::patch::impl {
namespace {

ZydisApi g_zydis;

// Runs once, under pthread_once: at load time or from a dlopen of a runtime, never in a
// dying thread. The libc dlopen, not the guard's exported one (which would re-enter
// runtime detection, whose mutex our caller may hold).
void load_zydis() {
  using dlopen_fn = void *(*)(const char *, int);
  auto real_dlopen = reinterpret_cast<dlopen_fn>(dlsym(RTLD_NEXT, "dlopen"));
  void *h = nullptr;
#ifdef PFG_ZYDIS_DIR
  if (real_dlopen) h = real_dlopen(PFG_ZYDIS_DIR "/" PFG_ZYDIS_SONAME, RTLD_NOW | RTLD_LOCAL);
#endif
  if (!h && real_dlopen) h = real_dlopen(PFG_ZYDIS_SONAME, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    snprintf(g_zydis.error, sizeof g_zydis.error, "cannot load %s: %s", PFG_ZYDIS_SONAME, e ? e : "no dlopen");
    return;
  }
  g_zydis.init = reinterpret_cast<decltype(g_zydis.init)>(dlsym(h, "ZydisDecoderInit"));
  g_zydis.decode = reinterpret_cast<decltype(g_zydis.decode)>(dlsym(h, "ZydisDecoderDecodeInstruction"));
  g_zydis.decode_full = reinterpret_cast<decltype(g_zydis.decode_full)>(dlsym(h, "ZydisDecoderDecodeFull"));
  g_zydis.mnemonic = reinterpret_cast<decltype(g_zydis.mnemonic)>(dlsym(h, "ZydisMnemonicGetString"));
  g_zydis.version = reinterpret_cast<decltype(g_zydis.version)>(dlsym(h, "ZydisGetVersion"));
  if (!g_zydis.init || !g_zydis.decode || !g_zydis.decode_full || !g_zydis.mnemonic || !g_zydis.version ||
      !ZYAN_SUCCESS(g_zydis.init(&g_zydis.decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64))) {
    snprintf(g_zydis.error, sizeof g_zydis.error, "%s lacks the Zydis 4 decoder API", PFG_ZYDIS_SONAME);
    g_zydis.init = nullptr;
  }
}


}  // namespace

const ZydisApi *zydis() {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, load_zydis);
  return g_zydis.init ? &g_zydis : nullptr;
}

const char *zydis_error() { return g_zydis.error; }

const char *zydis_describe(char *buf, unsigned len) {
  const ZydisApi *z = zydis();
  if (!z) {
    snprintf(buf, len, "no decoder: %s", g_zydis.error);
    return buf;
  }
  ZyanU64 v = z->version();
  snprintf(buf, len, "Zydis %u.%u.%u, %s", static_cast<unsigned>(v >> 48),
           static_cast<unsigned>((v >> 32) & 0xFFFF), static_cast<unsigned>((v >> 16) & 0xFFFF),
           PFG_ZYDIS_SONAME);
  return buf;
}

int64_t rel_imm(const ZydisDecodedInstruction &in, int i) {
  int64_t v = static_cast<int64_t>(in.raw.imm[i].value.u);
  switch (in.raw.imm[i].size) {
    case 8: return static_cast<int8_t>(v);
    case 16: return static_cast<int16_t>(v);
    case 32: return static_cast<int32_t>(v);
    default: return v;
  }
}

bool is_jcc(ZydisMnemonic m) {
  switch (m) {
    case ZYDIS_MNEMONIC_JB: case ZYDIS_MNEMONIC_JBE: case ZYDIS_MNEMONIC_JL:
    case ZYDIS_MNEMONIC_JLE: case ZYDIS_MNEMONIC_JNB: case ZYDIS_MNEMONIC_JNBE:
    case ZYDIS_MNEMONIC_JNL: case ZYDIS_MNEMONIC_JNLE: case ZYDIS_MNEMONIC_JNO:
    case ZYDIS_MNEMONIC_JNP: case ZYDIS_MNEMONIC_JNS: case ZYDIS_MNEMONIC_JNZ:
    case ZYDIS_MNEMONIC_JO: case ZYDIS_MNEMONIC_JP: case ZYDIS_MNEMONIC_JS:
    case ZYDIS_MNEMONIC_JZ:
      return true;
    default:
      return false;
  }
}

// Scan the whole function for relative branches into bytes 1..covered-1 of the patch.
// Linear sweep: x86-64 compilers keep jump tables in .rodata, so text decodes cleanly;

}  // namespace pfg::patch::impl
