package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// MongoStateHash hashes every document of every user collection (not in
// admin, config or local, not system.*), collections by name, documents
// in _id order, byte for byte: two servers hash alike only when they hold
// exactly the same documents.
func MongoStateHash(ctx context.Context, c *mongo.Client) (string, error) {
	h := sha256.New()
	dbs, err := c.ListDatabaseNames(ctx, bson.D{})
	if err != nil {
		return "", err
	}
	sort.Strings(dbs)
	for _, db := range dbs {
		if db == "admin" || db == "config" || db == "local" {
			continue
		}
		colls, err := c.Database(db).ListCollectionNames(ctx, bson.D{})
		if err != nil {
			return "", err
		}
		sort.Strings(colls)
		for _, coll := range colls {
			if strings.HasPrefix(coll, "system.") {
				continue
			}
			cur, err := c.Database(db).Collection(coll).Find(ctx, bson.D{}, options.Find().SetSort(bson.D{{Key: "_id", Value: 1}}))
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s.%s\n", db, coll)
			n := 0
			for cur.Next(ctx) {
				h.Write(cur.Current)
				n++
			}
			if err := cur.Err(); err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%d\n", n)
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
