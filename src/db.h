/*
 * db.h - the repository's SQLite database: opening with the right pragmas,
 * forward migrations from the schema/ SQL files, and small statement helpers.
 */
#ifndef WD_DB_H
#define WD_DB_H

#include <sqlite3.h>

#define WD_DB_FILE "repo.db"
#define WD_APPLICATION_ID 1464095312 /* 'WDRP' */

/* Opens (creating when create is set) the database file at path and brings
 * its schema up to date (not when readonly). A readonly open works on a
 * repository this process cannot write and leaves no file behind (db.c
 * says how). */
int wd__db_open(sqlite3 **out, const char *path, int readonly, int create);
/* A second, read-only connection to db's database file, opened the same way
 * (so it creates no file that db would not). */
int wd__db_open_reader(sqlite3 **out, sqlite3 *db);
/* A second read-write connection to db's database file (db must be open
 * for writing): for work on another thread, such as checkpoints. */
int wd__db_open_peer(sqlite3 **out, sqlite3 *db);
void wd__db_close(sqlite3 *db);

/* Runs SQL without results; maps failures to WD_* codes with a message. */
int wd__db_exec(sqlite3 *db, const char *sql);
/* COMMIT, and a crash point for the fault matrix (fault.h): every
 * transaction the library commits goes through here. */
int wd__db_commit(sqlite3 *db);
int wd__db_prepare(sqlite3 *db, sqlite3_stmt **out, const char *sql);
/* Converts a failed sqlite3 result code into a WD_* code and message. */
int wd__db_error(sqlite3 *db, int sqlite_rc, const char *what);
/* Steps st once: 1 for a row, 0 when the statement is done, else a
 * negative WD_* code (WD_EBUSY for a busy or locked database) with a message
 * naming what. A scan must stop on the error rather than take it for the
 * end: a lock or I/O error mid-scan would otherwise read as a short result
 * or "not found". */
int wd__db_step(sqlite3 *db, sqlite3_stmt *st, const char *what);

#endif
