package oplog

import (
	"context"
	"fmt"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"

	"github.com/tidemark/tidemark/archive"
)

// Engine is the repository engine name of MongoDB-compatible sources.
const Engine = "mongodb"

// Server flavours. MongoDB replica sets are the design's first target;
// FerretDB (v1, with a capped local.oplog.rs) writes a simpler oplog whose
// differences are handled in one place (ferretdb.go).
const (
	FlavourMongoDB  = "mongodb"
	FlavourFerretDB = "ferretdb"
)

// Source is what identifies a server and its oplog.
type Source struct {
	Flavour string
	Version string
	SetName string
	// ClusterID binds a repository to one replica set: MongoDB's
	// replicaSetId (an ObjectId chosen at replSetInitiate, stable across
	// members and restarts). FerretDB has no such id; its replica set name
	// (--repl-set-name) is the best identity it offers, so two FerretDB
	// servers configured with the same name look alike.
	ClusterID string
}

// ErrNoOplog: the server keeps no oplog (a standalone mongod, FerretDB
// without a capped local.oplog.rs).
var ErrNoOplog = archive.Class(archive.ErrMisconfigured, "the server keeps no oplog")

// Identify asks the server what it is.
func Identify(ctx context.Context, c *mongo.Client) (Source, error) {
	admin := c.Database("admin")
	var bi struct {
		Version  string `bson:"version"`
		FerretDB string `bson:"ferretdbVersion"` // FerretDB reports MongoDB's version in version
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "buildInfo", Value: 1}}).Decode(&bi); err != nil {
		return Source{}, fmt.Errorf("buildInfo: %w", err)
	}
	var hello struct {
		SetName string `bson:"setName"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return Source{}, fmt.Errorf("hello: %w", err)
	}
	s := Source{Flavour: FlavourMongoDB, Version: bi.Version, SetName: hello.SetName}
	if bi.FerretDB != "" {
		s.Flavour, s.Version = FlavourFerretDB, strings.TrimPrefix(bi.FerretDB, "v")
	}
	if s.SetName == "" {
		return Source{}, fmt.Errorf("%w: not a replica set member (no setName in hello); the oplog exists only on replica sets", ErrNoOplog)
	}
	if s.Flavour == FlavourFerretDB {
		s.ClusterID = "ferretdb:" + s.SetName
		return s, nil
	}
	var cfg struct {
		Config struct {
			Settings struct {
				ReplicaSetID bson.ObjectID `bson:"replicaSetId"`
			} `bson:"settings"`
		} `bson:"config"`
	}
	if err := admin.RunCommand(ctx, bson.D{{Key: "replSetGetConfig", Value: 1}}).Decode(&cfg); err != nil {
		return Source{}, fmt.Errorf("replSetGetConfig (the user needs the clusterMonitor role): %w", err)
	}
	s.ClusterID = "rs:" + s.SetName + ":" + cfg.Config.Settings.ReplicaSetID.Hex()
	return s, nil
}

// CheckOplog refuses a server that reports a replica set but keeps no
// oplog to tail: FerretDB writes one only into a capped local.oplog.rs
// created beforehand. Retrying cannot help; the fix is named.
func CheckOplog(ctx context.Context, c *mongo.Client, s Source) error {
	specs, err := c.Database("local").ListCollectionSpecifications(ctx, bson.D{{Key: "name", Value: "oplog.rs"}})
	if err != nil {
		return fmt.Errorf("list local.oplog.rs: %w", err)
	}
	fix := "run the server as a replica set member (mongod --replSet, then rs.initiate())"
	if s.Flavour == FlavourFerretDB {
		fix = `create it before writing: db.getSiblingDB("local").createCollection("oplog.rs", {capped: true, size: 1073741824}), and run FerretDB with --repl-set-name`
	}
	if len(specs) == 0 {
		return fmt.Errorf("%w: %s has no local.oplog.rs: %s", ErrNoOplog, s.Flavour, fix)
	}
	var opts struct {
		Capped bool `bson:"capped"`
	}
	if specs[0].Options != nil {
		bson.Unmarshal(specs[0].Options, &opts)
	}
	if !opts.Capped {
		return fmt.Errorf("%w: local.oplog.rs on %s is not a capped collection: %s", ErrNoOplog, s.Flavour, fix)
	}
	return nil
}

// Archive returns the repository source record for s.
func (s Source) Archive() archive.Source {
	return archive.Source{Engine: Engine, ClusterID: s.ClusterID,
		Details: map[string]string{"flavour": s.Flavour, "version": s.Version, "set_name": s.SetName}}
}

// StreamName is the archive stream holding s's oplog.
func (s Source) StreamName() string { return StreamName(s.SetName) }

// StreamName is the archive stream of a replica set's oplog.
func StreamName(setName string) string {
	clean := strings.Map(func(r rune) rune {
		if r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') {
			return r
		}
		return '_'
	}, setName)
	return "oplog/" + clean
}

// FlavourOf reads the flavour a repository recorded for its source.
func FlavourOf(src *archive.Source) (string, error) {
	if src.Engine != Engine {
		return "", fmt.Errorf("repository holds %s, not MongoDB", src.Engine)
	}
	switch f := src.Details["flavour"]; f {
	case FlavourMongoDB, FlavourFerretDB:
		return f, nil
	default:
		return "", fmt.Errorf("repository source has unknown MongoDB flavour %q: %w", f, archive.ErrUnsupported)
	}
}

// ReadMajority returns the majority commit point, hello's
// lastWrite.majorityOpTime.ts. ok is false when the server reports none
// (FerretDB: a single node whose writes are all committed).
func ReadMajority(ctx context.Context, c *mongo.Client) (ts TS, ok bool, err error) {
	var hello struct {
		LastWrite *struct {
			MajorityOpTime *struct {
				TS bson.Timestamp `bson:"ts"`
			} `bson:"majorityOpTime"`
		} `bson:"lastWrite"`
	}
	if err := c.Database("admin").RunCommand(ctx, bson.D{{Key: "hello", Value: 1}}).Decode(&hello); err != nil {
		return TS{}, false, fmt.Errorf("hello: %w", err)
	}
	if hello.LastWrite == nil || hello.LastWrite.MajorityOpTime == nil {
		return TS{}, false, nil
	}
	return FromBSON(hello.LastWrite.MajorityOpTime.TS), true, nil
}
