package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/afftok/webhookd/bus"
	"github.com/afftok/webhookd/config"
)

// errUsage: the flag package has printed what is wrong.
var errUsage = errors.New("usage")

// parse parses a command's flags; -h prints their help and ends the command
// successfully (errHelpShown).
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelpShown
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; %s", fs.Arg(0), usage)
	}
	return nil
}

var errHelpShown = errors.New("help shown")

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", os.Getenv(config.ConfigEnv), "YAML configuration file (default $"+config.ConfigEnv+"); WEBHOOKD_* variables win over it")
}

func modeFlag(fs *flag.FlagSet) *string {
	return fs.String("mode", string(config.ModeServe), "the mode whose defaults apply: serve or dev")
}

func parseMode(s string) (config.Mode, error) {
	switch m := config.Mode(s); m {
	case config.ModeServe, config.ModeDev:
		return m, nil
	}
	return "", fmt.Errorf("--mode %q: serve or dev", s)
}

// configError presents the configuration's problems one a line.
func configError(err error) error {
	var ps config.Problems
	if !errors.As(err, &ps) {
		return fmt.Errorf("configuration: %w", err)
	}
	noun := "problems"
	if len(ps) == 1 {
		noun = "problem"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "configuration: %d %s:", len(ps), noun)
	for _, p := range ps {
		b.WriteString("\n  " + p.Error())
	}
	return errors.New(b.String())
}

// configCommand prints the effective configuration (defaults, file,
// environment) as YAML usable as a configuration file, secrets redacted.
// The configuration's problems, if any, follow on stderr, and the command
// fails.
func configCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("webhookd config", flag.ContinueOnError)
	file, modeName := configFlag(fs), modeFlag(fs)
	markdown := fs.Bool("markdown", false, "print every setting with its serve and dev defaults as a Markdown table instead")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *markdown {
		fmt.Fprintln(stdout, "| Variable | serve default | dev default | Meaning |\n|---|---|---|---|")
		for _, d := range config.Docs() {
			fmt.Fprintf(stdout, "| `%s` | `%s` | `%s` | %s |\n", d.Env, d.Default, d.DevDefault, d.Help)
		}
		return nil
	}
	mode, err := parseMode(*modeName)
	if err != nil {
		return err
	}
	cfg, err := config.LoadFile(mode, *file, os.Getenv)
	var ps config.Problems
	if err != nil && !errors.As(err, &ps) {
		return configError(err)
	}
	if len(ps) == 1 && ps[0].Env == "" && ps[0].Where == "configuration file" {
		return configError(err) // the file could not be read: nothing to print
	}
	fmt.Fprintf(stdout, "# webhookd %s: effective configuration (defaults, then %s, then WEBHOOKD_* variables)\n", mode, orNone(*file))
	if _, werr := stdout.Write(cfg.YAML()); werr != nil {
		return werr
	}
	for _, name := range config.UnknownEnv(os.Environ()) {
		fmt.Fprintf(stderr, "webhookd: warning: %s is no setting (misspelt?); ignored\n", name)
	}
	if err != nil {
		return configError(err)
	}
	return nil
}

func orNone(file string) string {
	if file == "" {
		return "no file"
	}
	return file
}

// topicSettings are the settings the topics command uses: problems with
// other settings (an admin token, ClickHouse) do not stop it.
func topicSetting(env string) bool {
	return env == "" || strings.HasPrefix(env, "WEBHOOKD_KAFKA_") || strings.HasPrefix(env, "WEBHOOKD_TOPIC_") ||
		env == "WEBHOOKD_EVENT_TOPICS" || env == "WEBHOOKD_CREATE_EVENT_TOPICS" || env == "WEBHOOKD_RETRY_TIERS"
}

// topicsCommand prints the topic plan against the brokers and, with
// --apply, creates the missing topics webhookd manages. It never deletes or
// alters a topic; differences are reported for a person to judge.
func topicsCommand(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("webhookd topics", flag.ContinueOnError)
	file, modeName := configFlag(fs), modeFlag(fs)
	apply := fs.Bool("apply", false, "create the missing topics (never deletes, never alters)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up on the brokers after this long")
	if err := parse(fs, args); err != nil {
		return err
	}
	mode, err := parseMode(*modeName)
	if err != nil {
		return err
	}
	cfg, err := config.LoadFile(mode, *file, os.Getenv)
	if err != nil {
		var ps, mine config.Problems
		if !errors.As(err, &ps) {
			return configError(err)
		}
		for _, p := range ps {
			if topicSetting(p.Env) {
				mine = append(mine, p)
			}
		}
		if len(mine) > 0 {
			return configError(mine)
		}
	}
	if cfg.KafkaBrokers == "" {
		return errors.New("topics: no brokers: set WEBHOOKD_KAFKA_BROKERS (kafka_brokers in the file)")
	}
	topics, err := bus.NewTopics(&cfg)
	if err != nil {
		return err
	}
	opts, err := bus.ClientOpts(&cfg, nil)
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	specs := topics.Specs(cfg.TopicPartitions, true)
	unmanaged := map[string]bool{}
	if !cfg.CreateEventTopics {
		for _, e := range topics.Events {
			unmanaged[e] = true
		}
	}
	plan, err := bus.Plan(ctx, adm, specs, cfg.TopicReplication, unmanaged)
	if err != nil {
		return fmt.Errorf("topics: %w", err)
	}
	created := map[string]bool{}
	var errs []error
	if *apply {
		for _, st := range plan {
			if st.Exists || !st.Managed {
				continue
			}
			if err := bus.CreateTopic(ctx, adm, st.Spec, cfg.TopicReplication); err != nil {
				errs = append(errs, err)
				continue
			}
			created[st.Name] = true
		}
	}
	printPlan(stdout, plan, cfg.TopicReplication, created)
	var missing, differ, unmanagedMissing int
	for _, st := range plan {
		switch {
		case !st.Exists && !st.Managed:
			unmanagedMissing++
		case !st.Exists && !created[st.Name]:
			missing++
		case len(st.Diffs) > 0:
			differ++
		}
	}
	fmt.Fprintf(stdout, "\n%d topics: %d created, %d missing, %d differ from the plan (left as they are: webhookd never alters or deletes a topic)",
		len(plan), len(created), missing, differ)
	if unmanagedMissing > 0 {
		fmt.Fprintf(stdout, "; %d event topic(s) missing, which webhookd does not create (create_event_topics is false)", unmanagedMissing)
	}
	fmt.Fprintln(stdout)
	if missing > 0 && !*apply {
		fmt.Fprintln(stdout, "Run with --apply to create the missing topics.")
	}
	return errors.Join(errs...)
}

func printPlan(w io.Writer, plan []bus.TopicState, replication int, created map[string]bool) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITIONS\tREPLICATION\tCONFIGS\tSTATE")
	repl := "broker default"
	if replication > 0 {
		repl = strconv.Itoa(replication)
	}
	for _, st := range plan {
		var cfgs []string
		for _, k := range slices.Sorted(maps.Keys(st.Spec.Configs)) {
			cfgs = append(cfgs, k+"="+*st.Spec.Configs[k])
		}
		var state string
		switch {
		case created[st.Name]:
			state = "created"
		case !st.Exists && !st.Managed:
			state = "missing (an event topic: not created by webhookd)"
		case !st.Exists:
			state = "missing"
		case len(st.Diffs) > 0:
			state = "exists, differs: " + strings.Join(st.Diffs, "; ")
		default:
			state = "exists"
		}
		if st.Exists && replication <= 0 {
			state += fmt.Sprintf(" (replication %d)", st.Replication)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", st.Name, st.Spec.Partitions, repl, strings.Join(cfgs, ","), state)
	}
	_ = tw.Flush()
}
