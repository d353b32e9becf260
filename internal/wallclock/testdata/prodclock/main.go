// Command prodclock prints wallclock.Now as Unix seconds: built with `go build`
// by wallclock's test to show that a production binary ignores the offset.
package main

import (
	"fmt"

	"github.com/incidentfox/orchestrator-edge/internal/wallclock"
)

func main() { fmt.Println(wallclock.Now().Unix(), wallclock.Offset()) }
