// Command dnsfence is a DNS forwarder that sinkholes the names on its blocklists.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/dnsfence/dnsfence/cmd/dnsfence/internal/indexchild"
	"github.com/dnsfence/dnsfence/configs"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	// A child building the blocklist index (see indexchild) does only that: no flags, no logs,
	// no listeners.
	if indexchild.Child() {
		os.Exit(indexchild.Run(os.Stdin, os.Stdout, os.Stderr, configs.Lists()))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "dnsfence:", err)
		os.Exit(1)
	}
}

// run is the whole program; main only adds the process (signals, exit code). Tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runWith(ctx, args, stdout, stderr, hooks{})
}
