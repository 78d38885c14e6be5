// Package faults is the fault suite: the tidemark binary run against real
// servers (PostgreSQL, MariaDB, FerretDB, MinIO) while they and it are
// made to fail — kill -9 of the streamer and of backups under load, object
// store outages, a full disk, and every kind of repository object damaged,
// truncated or deleted. It asserts that no acknowledged commit is lost,
// that verify names each problem, that a restore either succeeds from
// intact objects or refuses naming the object, and that nothing is left
// unreported. It has no code of its own: only tests.
package faults
