package connect

import (
	"net/http"

	"github.com/trackops/trackops/internal/cdc"
	"github.com/trackops/trackops/internal/httpapi"
	"github.com/trackops/trackops/internal/postgres"
)

// ReportHandler serves GET /api/v1/ops/cdc on the platform's own API: the
// cdc.Report of this process (m is nil without the cdc role), with
// TrackOps' problem details on errors.
func ReportHandler(m *cdc.Manager, db postgres.Querier, strategy string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rep, err := cdc.BuildReport(r.Context(), m, db, strategy)
		if err != nil {
			httpapi.WriteError(w, r, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, rep)
	}
}
