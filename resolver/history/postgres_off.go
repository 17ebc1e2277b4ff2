//go:build nopostgres

package history

import (
	"context"
	"errors"
)

// OpenPostgres fails: this binary was built without the PostgreSQL driver (-tags nopostgres).
func OpenPostgres(context.Context, string) (Store, error) {
	return nil, errors.New("this dnsfence was built without PostgreSQL (-tags nopostgres): use the SQLite file (no history.postgres_url), or history.enabled: false")
}
