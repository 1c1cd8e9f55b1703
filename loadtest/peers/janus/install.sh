#!/usr/bin/env bash
# Installs what the Janus comparison (compare.sh) needs, when it is missing:
# Debian's `janus` (1.1.2 on bookworm), `python3-aiohttp` for the WHIP
# adapter (whip_janus.py, run by /usr/bin/python3), and iproute2 and
# util-linux (ip netns, flock, taskset, chrt). Debian packages only, through
# apt-get; nothing is downloaded from anywhere else. Idempotent: with
# everything present it installs nothing. The package's own service is not
# used (compare.sh starts Janus with the configuration in this folder) and
# /etc/janus is left as the package made it.
#
#   loadtest/peers/janus/install.sh
set -euo pipefail

packages=(janus python3-aiohttp iproute2 util-linux curl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} = 0 ]; then
  echo "install.sh: janus $(dpkg-query -W -f='${Version}' janus) and the adapter's packages are installed" >&2
  exit 0
fi
sudo=()
[ "$(id -u)" = 0 ] || sudo=(sudo)
echo "install.sh: apt-get install ${missing[*]}" >&2
"${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
  install -y -qq --no-install-recommends "${missing[@]}"
