// The decoder of the x86-64 patcher: Zydis 4 (Debian's libzydis-dev), loaded with dlopen
// on first use, so that the guarded processes that patch nothing -- most of them -- do
// not map and relocate it (docs/performance.md). Header types, dlsym'd functions.
#pragma once
#include <Zydis/Zydis.h>
#include <stdint.h>

namespace pfg::patch::impl {

struct ZydisApi {
  decltype(&ZydisDecoderInit) init;
  decltype(&ZydisDecoderDecodeInstruction) decode;
  decltype(&ZydisDecoderDecodeFull) decode_full;
  decltype(&ZydisMnemonicGetString) mnemonic;
  decltype(&ZydisGetVersion) version;
  ZydisDecoder decoder;
  char error[144];  // why it could not be loaded ("" when it was)
};

// The decoder, or nullptr (then zydis_error() says why). Loads it on the first call.
const ZydisApi *zydis();
const char *zydis_error();

// "Zydis 4.0.0, libZydis.so.4.0", or why there is no decoder.
const char *zydis_describe(char *buf, unsigned len);

// A relative immediate of `in`, sign-extended from its encoded width.
int64_t rel_imm(const ZydisDecodedInstruction &in, int i);
bool is_jcc(ZydisMnemonic m);

}  // namespace pfg::patch::impl
