package analytics

import (
	"context"
	"fmt"
)

// FinishedExecutions counts the executions whose id starts with prefix (a
// replay's: delivery.ReplayExecutionPrefix) that have a final status —
// delivered, dead, partly dead or cancelled — among those of pipelineIDs
// (every pipeline when empty). An execution redone after a takeover has the
// same id and counts once.
func (s *Store) FinishedExecutions(ctx context.Context, prefix string, pipelineIDs []string) (int64, error) {
	rows, err := s.b.query(ctx, `
		SELECT countIf(status IN ('completed', 'failed', 'partial', 'cancelled'))
		FROM `+s.t("executions")+` FINAL
		WHERE startsWith(execution_id, {prefix:String})
		  AND (length({ids:Array(String)}) = 0 OR has({ids:Array(String)}, pipeline_id))`,
		Params{"prefix": prefix, "ids": append([]string{}, pipelineIDs...)})
	if err != nil {
		return 0, fmt.Errorf("finished executions: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	return asInt(rows[0][0]), nil
}
