// Package agent is the archiving daemon: supervised streams, scheduled base
// backups, retention, verification, restore drills, metrics and alerts.
package agent
