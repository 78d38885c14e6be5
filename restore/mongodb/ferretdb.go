package mongodb

import (
	"context"
	"fmt"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// FerretDB's oplog differences, for replay. (Capture's are in
// oplog/ferretdb.go.) FerretDB v1 logs every update — $set, $unset,
// replaceOne alike — as {$v: 1, $set: <the whole new document>}: read by
// MongoDB's rules that would merge into the old document and keep fields
// that $unset removed. So a FerretDB u is a full replacement. FerretDB
// logs no commands, so replay never meets c entries from it.

// ferretUpdate applies a FerretDB u entry as the replacement it is.
func ferretUpdate(ctx context.Context, c *mongo.Collection, filter bson.D, o bson.Raw) error {
	doc, ok := o.Lookup("$set").DocumentOK()
	if !ok {
		return fmt.Errorf("FerretDB update entry without a $set document: %s", o)
	}
	_, err := c.ReplaceOne(ctx, filter, doc, options.Replace().SetUpsert(true))
	return err
}
