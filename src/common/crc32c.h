/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
 * every craftd disk record, snapshot and wire frame.
 *
 * zlib-style chaining: start with crc = 0 and pass the previous result to
 * continue, so crc32c(crc32c(0, a, n), b, m) == crc32c(0, a||b, n+m).
 * crc32c() uses the SSE4.2 crc32 instruction when the CPU has it (checked at
 * each call with __builtin_cpu_supports, no global state) and a table
 * otherwise; both give identical results. Pure functions: any thread. */
#ifndef CRAFT_CRC32C_H
#define CRAFT_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The two implementations, exposed for tests and benchmarks.
 * crc32c_hw() may only be called when crc32c_hw_available(). */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);
bool crc32c_hw_available(void);

#endif
