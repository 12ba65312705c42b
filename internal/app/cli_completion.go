package app

import (
	"context"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
)

func completionCmd() *Command {
	return &Command{Name: "completion", Summary: "print a shell completion script (bash or zsh)",
		Usage: "trackops completion bash|zsh\n" +
			"  bash: source <(trackops completion bash)   (or save it under /etc/bash_completion.d/trackops)\n" +
			"  zsh:  source <(trackops completion zsh)    (or save it as _trackops in a directory of $fpath)",
		Args: []string{"bash", "zsh"}, NoConfig: true, Run: completionCommand}
}

func completionCommand(_ context.Context, env *Env, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("%w: name the shell: bash or zsh", ErrUsage)
	}
	words := completionWords(Commands())
	switch args[0] {
	case "bash":
		writeBashCompletion(env.Stdout, words)
	case "zsh":
		writeZshCompletion(env.Stdout, words)
	default:
		return fmt.Errorf("%w: unknown shell %q: want bash or zsh", ErrUsage, args[0])
	}
	return nil
}

// commandWords are what completion offers after one command: its first
// arguments and its flags.
type commandWords struct {
	name  string
	args  []string
	flags []string
}

var flagRe = regexp.MustCompile(`--[a-z][a-z0-9-]*`)

// completionWords derives each command's words from the command list
// itself (flags from the usage text), so completion cannot drift from the
// CLI.
func completionWords(cmds []*Command) []commandWords {
	out := make([]commandWords, 0, len(cmds))
	for _, c := range cmds {
		w := commandWords{name: c.Name, args: c.Args}
		if c.Name == "help" {
			for _, o := range cmds {
				w.args = append(w.args, o.Name)
			}
		}
		for _, f := range flagRe.FindAllString(c.Usage, -1) {
			if !slices.Contains(w.flags, f) {
				w.flags = append(w.flags, f)
			}
		}
		w.flags = append(w.flags, "--help")
		out = append(out, w)
	}
	return out
}

func names(words []commandWords) string {
	n := make([]string, len(words))
	for i, w := range words {
		n[i] = w.name
	}
	return strings.Join(n, " ")
}

func writeBashCompletion(w io.Writer, words []commandWords) {
	fmt.Fprintf(w, `# bash completion for trackops; load it with: source <(trackops completion bash)
_trackops() {
    local cur=${COMP_WORDS[COMP_CWORD]}
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "%s --help --version" -- "$cur"))
        return
    fi
    local args="" flags=""
    case "${COMP_WORDS[1]}" in
`, names(words))
	for _, c := range words {
		fmt.Fprintf(w, "    %s) args=%q; flags=%q ;;\n", c.name, strings.Join(c.args, " "), strings.Join(c.flags, " "))
	}
	fmt.Fprint(w, `    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$flags" -- "$cur"))
    elif [ "$COMP_CWORD" -eq 2 ]; then
        COMPREPLY=($(compgen -W "$args" -- "$cur"))
    else
        COMPREPLY=()
    fi
}
complete -o default -F _trackops trackops
`)
}

func writeZshCompletion(w io.Writer, words []commandWords) {
	fmt.Fprint(w, `#compdef trackops
# zsh completion for trackops; load it with: source <(trackops completion zsh)
_trackops() {
    local -a cmds
    cmds=(
`)
	for _, c := range Commands() {
		fmt.Fprintf(w, "        %s\n", zshQuote(c.Name+":"+c.Summary))
	}
	fmt.Fprint(w, `    )
    if (( CURRENT == 2 )); then
        _describe 'command' cmds
        compadd -- --help --version
        return
    fi
    local -a args flags
    case $words[2] in
`)
	for _, c := range words {
		fmt.Fprintf(w, "        %s) args=(%s); flags=(%s) ;;\n", c.name, strings.Join(c.args, " "), strings.Join(c.flags, " "))
	}
	fmt.Fprint(w, `    esac
    if [[ $PREFIX == -* ]]; then
        compadd -- $flags
    elif (( CURRENT == 3 )); then
        compadd -- $args
    else
        _files
    fi
}
if [[ $zsh_eval_context[-1] == loadautofunc ]]; then
    _trackops "$@"
else
    compdef _trackops trackops
fi
`)
}

// zshQuote single-quotes s for zsh.
func zshQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
