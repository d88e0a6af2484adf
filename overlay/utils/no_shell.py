# Commands run without a shell (patch no-shell-commands)
#
# v7.0 built command lines with f-strings and handed them to os.system or shell=True, so an option or a file's
# text that reached them (--bucket, a dataset's download URL, a run folder's name) could append commands of its
# own ("x; <command>; #"). Here every such command is an argument list: what was one word stays one word.
import subprocess


def run(*argv, quiet=False):
    """Exit status of argv run directly (os.system's return value for a command line); 127 if not found."""
    out = subprocess.DEVNULL if quiet else None
    try:
        return subprocess.run([str(a) for a in argv], stdout=out, stderr=out).returncode
    except OSError:
        return 127


def output(*argv):
    """Standard output of argv run directly, as text (subprocess.check_output of a command line)."""
    return subprocess.check_output([str(a) for a in argv]).decode()
