/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The pin directory on bpffs: where maps, programs and links outlive the daemon. */
#ifndef SLUICE_PINS_H
#define SLUICE_PINS_H

#include <stddef.h>

/* PIN_DIR/SUB/NAME (SUB or NAME may be NULL). Returns -ENAMETOOLONG if it does not fit. */
int pin_path(char *buf, size_t len, const char *pin_dir, const char *sub, const char *name);
/*
 * Make sure pin_dir can hold pins: it must be on a bpffs (the default /sys/fs/bpf is
 * mounted if it is not yet), and it and its subdirectories are created 0700.
 */
int pins_prepare(const char *pin_dir);
/* Remove every pin under pin_dir and the directories themselves (missing is fine). */
int pins_remove_all(const char *pin_dir);
/* Create a directory and its parents with mode 0700 (existing ones are left as they are). */
int mkdir_p(const char *path);

#endif
