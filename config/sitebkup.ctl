; sitebkup.ctl - the backup control file (docs/formats.md, "Backup control
; file").  Copy it to <root>/inboxes/sitebkup.box/sitebkup.ctl to change what
; sitebkup runs; without that file it runs the default, which is this file's
; active lines.
;
; The file is run top to bottom, but it is read whole first: an unknown
; section or command, a bad argument, or a token used but not set refuses
; the whole run before anything happens, and sitebkup.log names the line.
;
; Lines starting with ';' explain; lines starting with "# " are examples:
; remove the "# " to use them.
;
; Sections, each at most once and in this order, any of them missing:
;   [Tokens]  NAME = value      NAME is [A-Z][A-Z0-9_]*, at most 32
;             characters.  %NAME% in a value or an argument is a token set
;             above, or a built-in: %SITE% (the site code), %ROOT% (the site
;             root), %DESTINATION% (backup.destination).  %% is a %.
;   [Stop]    stop DAEMON...    distmgr, sender, despool, statmgr (never
;             sitebkup, which runs this file).  Not needed: the default
;             backs up a running site, with the same daemon pids after.
;   [Tasks]   destination PATH  where this run's backups go, absolute, equal
;                               to or below backup.destination; before the
;                               tasks, at most once
;             database          db/site.db (online backup API, quick_check)
;             config            site.conf
;             keys              keys/
;             inboxes           every inbox's files, as of one moment
;             store             store/ (small.db by the backup API, objects
;                               linked): the content of the site's packages
;   [Start]   start DAEMON...   waits for each daemon to be ready
;
; Each task at most once; a file without any task is refused.

# [Tokens]
# WEEKLY = %DESTINATION%/weekly

; Stopping daemons is never needed for a consistent backup; should you want
; it, sitebkup starts them again in [Start], waiting for each to be ready.
# [Stop]
# stop distmgr sender

[Tasks]
# destination %WEEKLY%
; the inboxes before the database, the store after it (see the default's
; comment in lib/bkctl.c: a backup taken while work flows then loses nothing)
config
keys
inboxes
database
store

# [Start]
# start sender distmgr
