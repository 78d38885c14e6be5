// Package binlog archives MySQL/MariaDB binary logs by registering as a
// replica and storing events byte for byte as the server sent them.
package binlog
