// Package basebackup takes base backups per engine (PostgreSQL BASE_BACKUP,
// MySQL/MariaDB consistent snapshots, MongoDB collection scans) into the
// repository's deduplicated chunk storage.
package basebackup
