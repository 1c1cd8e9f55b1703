# Shared by scripts/run.sh and scripts/test.sh (sourced, not run).

# Stops with a clear message when there is no Rust toolchain.
require_cargo() {
  if ! command -v cargo >/dev/null; then
    echo "error: cargo is not installed; install a Rust toolchain (1.89 or newer) first" >&2
    exit 1
  fi
}

# Installs the named Debian packages with apt-get (through sudo unless root);
# does nothing when none is named.
install_debian_packages() {
  (($#)) || return 0
  echo "==> installing Debian packages: $*"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "$@"
}

# The packages every build needs (libopus is built from source with cmake;
# DTLS links the system OpenSSL; hearken-verbal links Debian's pocketsphinx
# through pkg-config), appended to the array named by $1 when missing.
add_missing_build_tools() {
  local -n into=$1
  command -v cmake >/dev/null || into+=(cmake)
  command -v cc >/dev/null || into+=(build-essential)
  command -v pkg-config >/dev/null || into+=(pkg-config)
  { command -v pkg-config >/dev/null && pkg-config --exists openssl; } || into+=(libssl-dev)
  { command -v pkg-config >/dev/null && pkg-config --exists pocketsphinx; } ||
    into+=(libpocketsphinx-dev libsphinxbase-dev)
}
