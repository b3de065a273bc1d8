/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/*
 * The service manager's readiness protocol (sd_notify, without libsystemd): tell systemd
 * when the daemon enforces (READY=1), reloads (RELOADING=1) and stops (STOPPING=1), so a
 * Type=notify unit orders the network behind enforcement. Nothing happens outside systemd.
 */
#ifndef SLUICE_NOTIFY_H
#define SLUICE_NOTIFY_H

/* Send state (e.g. "READY=1\nSTATUS=enforcing") to $NOTIFY_SOCKET if set; 0 or -errno. */
int notify_service_manager(const char *state);

#endif
