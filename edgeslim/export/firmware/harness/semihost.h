// Arm semihosting calls (BKPT 0xAB on M-profile): the harness's only channel to the host.
// QEMU serves them with -semihosting-config enable=on,target=native; a real board would need a debugger.
#ifndef EDGESLIM_SEMIHOST_H_
#define EDGESLIM_SEMIHOST_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum {
  kSysOpen = 0x01,
  kSysClose = 0x02,
  kSysWrite = 0x05,
  kSysRead = 0x06,
  kSysSeek = 0x0A,
  kSysFlen = 0x0C,
  kSysExit = 0x18,
};
enum { kModeReadBinary = 1, kModeWriteBinary = 5 };
// SYS_EXIT reasons: QEMU exits with status 0 for ApplicationExit and 1 for any other reason.
enum { kExitOk = 0x20026, kExitError = 0x20023 };

static inline int semihost_call(int op, const void* arg) {
  register int r0 __asm__("r0") = op;
  register const void* r1 __asm__("r1") = arg;
  __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
  return r0;
}

static inline size_t semihost_strlen(const char* s) {
  size_t n = 0;
  while (s[n] != '\0') ++n;
  return n;
}

// Returns a handle, or -1 when the host cannot open the file.
static inline int semihost_open(const char* name, int mode) {
  uintptr_t args[3] = {(uintptr_t)name, (uintptr_t)mode, (uintptr_t)semihost_strlen(name)};
  return semihost_call(kSysOpen, args);
}

static inline void semihost_close(int handle) {
  uintptr_t args[1] = {(uintptr_t)handle};
  semihost_call(kSysClose, args);
}

// Both return the number of bytes NOT transferred (0 on success), as the semihosting spec says.
static inline int semihost_write(int handle, const void* data, size_t n) {
  uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)data, (uintptr_t)n};
  return semihost_call(kSysWrite, args);
}

static inline int semihost_read(int handle, void* data, size_t n) {
  uintptr_t args[3] = {(uintptr_t)handle, (uintptr_t)data, (uintptr_t)n};
  return semihost_call(kSysRead, args);
}

// Returns 0 on success.
static inline int semihost_seek(int handle, size_t position) {
  uintptr_t args[2] = {(uintptr_t)handle, (uintptr_t)position};
  return semihost_call(kSysSeek, args);
}

static inline int semihost_flen(int handle) {
  uintptr_t args[1] = {(uintptr_t)handle};
  return semihost_call(kSysFlen, args);
}

// On AArch32 the exit reason is passed in r1 itself, not through a parameter block.
static inline void semihost_exit(int ok) {
  semihost_call(kSysExit, (const void*)(uintptr_t)(ok ? kExitOk : kExitError));
  for (;;) {
  }
}

#ifdef __cplusplus
}
#endif

#endif  // EDGESLIM_SEMIHOST_H_
