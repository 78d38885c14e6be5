package mysql

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/tidemark/tidemark/archive"
	mysqlbackup "github.com/tidemark/tidemark/basebackup/mysql"
	"github.com/tidemark/tidemark/binlog"
	"github.com/tidemark/tidemark/restore"
)

// VerifyBases checks, from the index alone, that every MySQL base
// backup can be rolled forward: the archived binlog continues without a
// hole from its snapshot position to the newest archived event. It returns
// one problem per base that cannot, naming the missing range.
func VerifyBases(ctx context.Context, repo *archive.Repository) ([]string, error) {
	ids, err := repo.ListManifests(ctx)
	if err != nil {
		return nil, err
	}
	var problems []string
	for _, id := range ids {
		m, err := repo.ReadManifest(ctx, id)
		if errors.Is(err, archive.ErrNotExist) {
			continue // expired since the listing
		}
		if err != nil {
			problems = append(problems, err.Error()) // and the other bases are still checked
			continue
		}
		if m.Engine != "mysql" {
			continue
		}
		var meta mysqlbackup.Meta
		if err := json.Unmarshal(m.EngineMeta, &meta); err != nil {
			problems = append(problems, fmt.Sprintf("backup %s: engine metadata: %v", id, err))
			continue
		}
		err = CheckBinlogCoverage(ctx, repo, meta.Position(), binlog.Target{Latest: true})
		switch {
		case err == nil:
		case errors.Is(err, restore.ErrGap), errors.Is(err, restore.ErrUnreachable):
			problems = append(problems, fmt.Sprintf("backup %s (consistent at %s) cannot be rolled forward: %v", id, meta.Position(), err))
		default:
			return nil, fmt.Errorf("check the binlog after backup %s: %w", id, err)
		}
	}
	return problems, nil
}
