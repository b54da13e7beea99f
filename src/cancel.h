/*
 * cancel.h - a process-wide "stop at the next piece" flag. A binding (the
 * Python package) raises it from another thread when the user presses
 * Ctrl-C; the thread pool checks it before each piece it hands out, so a
 * long call fails with WD_ECANCELLED at a piece boundary and takes its
 * ordinary error path (temporaries removed, transaction rolled back).
 */
#ifndef WD_CANCEL_H
#define WD_CANCEL_H

/* Non-zero once wd_cancel_request() was called and until wd_cancel_clear(). */
int wd__cancel_requested(void);

/* Records "cancelled" as the thread's message; returns WD_ECANCELLED. */
int wd__cancel_error(void);

#endif
