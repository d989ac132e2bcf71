/* harness.h: the fuzz harnesses, shared by the libFuzzer targets (tests/fuzz/fuzz_*.c, built
 * with clang -fsanitize=fuzzer,address,undefined by `make fuzz`) and by the corpus replay
 * test (tests/test_fuzz_replay.c, built by the normal make with gcc).
 *
 * Each harness feeds bytes to the library's real entry points and checks what it can of the
 * result (a stream read back whole must write back and read back the same; a number parsed
 * must be in range, ...). It returns 0, or -1 after printing on stderr what property broke:
 * the fuzz targets abort() on -1 so that libFuzzer keeps the input. Crashes, leaks and
 * undefined behaviour are the sanitizers' business. */
#ifndef BN_FUZZ_HARNESS_H
#define BN_FUZZ_HARNESS_H
#include <stddef.h>
#include <stdint.h>

int fuzz_dataset(const uint8_t *data, size_t size);    /* dataset streams (ds_read_*, ds_load) */
int fuzz_checkpoint(const uint8_t *data, size_t size); /* checkpoint streams (ck_read, ck_read_next) */
/* The CIFAR-10 archive reader (cifar_read_archive). Byte 0 picks the mode: bit 0 set: the
 * rest is the file as it is (.tar.gz); clear: the rest is a tar, gzipped here first (so that
 * mutations reach the tar reader past the gzip CRC). Bits 1-2: the split (none, train, test,
 * all); bit 3: refuse an unofficial archive. */
int fuzz_archive(const uint8_t *data, size_t size);
/* The numeric option parsers (cli_parse_int/double/int_list/choice): byte 0 picks the parser
 * and its range, the rest is the option value. */
int fuzz_cli(const uint8_t *data, size_t size);
#endif
