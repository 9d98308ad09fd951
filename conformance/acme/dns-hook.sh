#!/usr/bin/env bash
# lego "exec" DNS provider hook (EXEC_PATH): publishes dns-01 TXT records in
# the loopback DNS server of conformance/lib-acme.sh (conformance/acme/dns.py).
#
#   dns-hook.sh present|cleanup FQDN VALUE
#
# Records live in $VELLUM_ACME_TXT_DIR/<fqdn, lower case, no trailing dot>,
# one value per line (a name may carry several, e.g. a wildcard's and its
# base name's).
set -euo pipefail
action=${1-} fqdn=${2-} value=${3-}
dir=${VELLUM_ACME_TXT_DIR:?VELLUM_ACME_TXT_DIR is not set}
[[ -n $fqdn && -n $value ]] || { echo "usage: $0 present|cleanup FQDN VALUE" >&2; exit 2; }
name=$(tr '[:upper:]' '[:lower:]' <<<"${fqdn%.}")
[[ $name =~ ^[a-z0-9_.-]+$ ]] || { echo "$0: bad name $fqdn" >&2; exit 2; }
file="$dir/$name"
echo "$(date +%T) $action $name $value" >>"$dir/hook.log"
case $action in
  present) printf '%s\n' "$value" >>"$file" ;;
  cleanup)
    if [[ -f $file ]]; then
      grep -vxF -- "$value" "$file" >"$file.tmp" || true
      mv "$file.tmp" "$file"
    fi
    ;;
  *) echo "$0: unknown action $action" >&2; exit 2 ;;
esac
