/*
 * fault.h - a test-only hook that kills the process at a chosen point, so
 * the fault matrix (tests/cli/t_fault_matrix.sh) can prove what a crash at
 * any step leaves behind.
 *
 * WDREPO_FAULT=KIND:N makes the Nth event of KIND raise SIGKILL right after
 * the event took effect. KIND is one of
 *   chunk  a chunk row inserted (inside a not yet committed group),
 *   txn    a database transaction committed,
 *   write  a write(2)/pwrite(2) of an output file completed.
 *   put    an object PUT to a remote answered (remote_push.c).
 * Without the variable each point costs one relaxed atomic load.
 */
#ifndef WD_FAULT_H
#define WD_FAULT_H

typedef enum { WD_FAULT_CHUNK = 0, WD_FAULT_TXN = 1, WD_FAULT_WRITE = 2, WD_FAULT_PUT = 3 } wd_fault_kind;

/* Counts one event of kind; kills the process if it is the chosen one. */
void wd__fault_point(wd_fault_kind kind);

#endif
