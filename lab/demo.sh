#!/usr/bin/env bash
# make demo: start the lab, seed it, then run what the collection can do end to end, and
# say where the report is. Each step prints one line of its own; failures stop the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-1}
export ANSIBLE_CONFIG="$PWD/ansible.cfg"
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

step "lab: start the servers (PostgreSQL, S3 endpoints, AWS emulator, BIND, app)"
.venv/bin/python -m lab up
step "lab: seed the primary site (SCALE=$scale)"
.venv/bin/python -m lab seed --scale "$scale" --site primary
step "preflight.yml: everything a recovery needs, at both sites"
ansible-playbook -i inventories/local playbooks/preflight.yml
step "backups: database (pgBackRest full + logical), files, configuration"
ansible-playbook -i inventories/local playbooks/backup_database.yml -e backup_type=full
ansible-playbook -i inventories/local playbooks/backup_files.yml -e snapshot=true
ansible-playbook -i inventories/local playbooks/backup_config.yml
step "dr_drill.yml: the monthly drill (isolated: the primary, DNS and the DR cluster are not touched)"
ansible-playbook -i inventories/local playbooks/dr_drill.yml | tee .lab/demo-drill.log
report=$(find reports -mindepth 1 -maxdepth 1 -type d -name '*-dr_drill' 2>/dev/null | sort | tail -1 || true)
summary=$(grep -o 'DR report: .*' .lab/demo-drill.log | tail -1 || true)
printf '\ndemo: done. %s\n' "${summary:-no drill report was written}"
printf 'demo: open %s/report.html in a browser (report.md has the post-incident review).\n' "${report:-reports/<time>-dr_drill}"
# A look at the page as a browser draws it, when headless Chromium is installed (it is not a
# requirement: apt-get install chromium). --no-sandbox only because Chromium refuses root without it.
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$report" ] && [ -n "$browser" ]; then
    sandbox=(); [ "$(id -u)" = 0 ] && sandbox=(--no-sandbox)
    if timeout 120 "$browser" --headless "${sandbox[@]}" --disable-gpu --hide-scrollbars --window-size=1280,2400 \
            --screenshot="$PWD/$report/report.png" "file://$PWD/$report/report.html" >/dev/null 2>&1; then
        printf 'demo: headless Chromium drew it: %s/report.png\n' "$report"
    else
        printf 'demo: headless Chromium could not draw %s/report.html (the report itself is written)\n' "$report"
    fi
fi
