package binlog

import "github.com/go-mysql-org/go-mysql/client"

// Identity is how the streamer names a server in the repository; base
// backups use it so their source binding and stream match the streamer's.
type Identity struct {
	Version   string
	MariaDB   bool
	ServerID  uint32
	Hostname  string
	LogBin    bool
	ClusterID string // the repository's source binding
	Stream    string // the archive stream holding the server's binlog
	// Replica: the server replicates from another (MariaDB); its own
	// binlog coordinates are not the cluster's stream, its GTIDs are.
	Replica bool

	si *serverInfo
}

// Identify reads the identity of the server c is connected to.
func Identify(c *client.Conn) (*Identity, error) {
	si, err := inspect(c)
	if err != nil {
		return nil, err
	}
	return &Identity{Version: si.Version, MariaDB: si.MariaDB, ServerID: si.ServerID, Hostname: si.Hostname,
		LogBin: si.LogBin, ClusterID: si.clusterID(), Stream: si.streamName(), Replica: si.Replica, si: si}, nil
}
