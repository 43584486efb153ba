/* Guest instructions executed under qemu user-mode emulation, between two markers
 * (a TCG plugin for `python -m edgerf.bench.arm_cost`).
 *
 * The guest marks the start and the end of its timed loop with an lseek on fd -1 at a
 * magic offset (a syscall that fails at once and that nothing else makes); at each
 * marker this prints "edgerf-mark <instructions so far>" to stderr, so the loop's count
 * excludes the interpreter's start-up and imports.
 *
 * Only the plugin-API declarations used here are written out (QEMU's public plugin
 * API, version 1, as in QEMU 7.2), so it builds with gcc alone: Debian's qemu-user
 * loads plugins but ships no header. */
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t id, struct qemu_plugin_tb *tb);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_syscall_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index, int64_t num,
                                              uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4,
                                              uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8);

void qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_tb_trans_cb_t cb);
size_t qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *tb);
void qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *tb, enum qemu_plugin_op op,
                                              void *ptr, uint64_t imm);
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb, void *userdata);
void qemu_plugin_register_vcpu_syscall_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_syscall_cb_t cb);

#define AARCH64_LSEEK 62
#define MARK_OFFSET 0xED6EF00DULL   /* edgerf.bench.arm_cost.MARK_OFFSET */

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

static uint64_t insns;   /* one counter: the benchmark runs its interpreter on one thread */

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    /* every execution of this block adds its instruction count: no callback per instruction */
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &insns,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_syscall(qemu_plugin_id_t id, unsigned int vcpu, int64_t num, uint64_t fd, uint64_t offset,
                       uint64_t a3, uint64_t a4, uint64_t a5, uint64_t a6, uint64_t a7, uint64_t a8)
{
    if (num == AARCH64_LSEEK && (int64_t)fd == -1 && offset == MARK_OFFSET)
        fprintf(stderr, "edgerf-mark %" PRIu64 "\n", insns);
}

static void on_exit(qemu_plugin_id_t id, void *p)
{
    fprintf(stderr, "edgerf-insns %" PRIu64 "\n", insns);
}

__attribute__((visibility("default")))
int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_vcpu_syscall_cb(id, on_syscall);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
