# mediagrid lab: Makefile fragment, included by the top-level Makefile
# (or used alone: make -f mk/lab.mk lab). Targets: lab, lab-down, lab-clean, db-backup, db-restore,
# lab-images, lab-verify, lab-vip-takeover, lint, test-playbooks, test-lab (test-lab-cluster,
# test-lab-roles).

LAB_ROOT        := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST))/..)))
LAB_VENV        ?= $(LAB_ROOT)/.venv-lab
LAB_PYTHON      ?= python3
LAB_BIN         := $(LAB_VENV)/bin
LAB_STAMP       := $(LAB_VENV)/.installed
LAB_INVENTORY   ?= $(LAB_ROOT)/inventory/lab
LAB_NET_PREFIX  ?= 10.77.0
LAB_NETWORK     ?= mediagrid-lab
LAB_BASE_IMAGE  ?= mediagrid/debian-base:bookworm
LAB_NODE_IMAGE  ?= mediagrid/node:bookworm
LAB_ROLES       ?= common mariadb glusterfs keepalived nginx
LAB_TEST_ROLES  ?= yes
LAB_VIP_ARGS    ?= --vip $(LAB_NET_PREFIX).10
LAB_ENV         := PATH="$(LAB_BIN):$$PATH" ANSIBLE_CONFIG="$(LAB_ROOT)/ansible.cfg" \
                   LAB_NET_PREFIX="$(LAB_NET_PREFIX)" LAB_NETWORK="$(LAB_NETWORK)" \
                   LAB_BASE_IMAGE="$(LAB_BASE_IMAGE)" LAB_NODE_IMAGE="$(LAB_NODE_IMAGE)" \
                   ANSIBLE_FORCE_COLOR="$${ANSIBLE_FORCE_COLOR:-0}" PY_COLORS=0
LAB_PLAYBOOK    := $(LAB_ENV) ansible-playbook -i $(LAB_INVENTORY)

LAB_PHONY := db-backup db-restore lab lab-host lab-images lab-up lab-converge lab-down lab-clean \
        lab-vip-takeover lab-verify lint test-playbooks test-lab test-lab-cluster test-lab-roles
.PHONY: $(LAB_PHONY)

# The venv is a file target: built once, rebuilt when requirements change.
$(LAB_STAMP): $(LAB_ROOT)/requirements-lab.txt
	$(LAB_PYTHON) -m venv $(LAB_VENV)
	$(LAB_BIN)/pip install --quiet --disable-pip-version-check -r $<
	touch $@

lab-host:
	$(LAB_ROOT)/lab/host-deps.sh

lab-images: lab-host
	$(LAB_ENV) $(LAB_ROOT)/lab/build-images.sh

lab-up: lab-images $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_PLAYBOOK) lab/up.yml

# The control plane ships as wheels built here (make wheels, in the top Makefile), the
# player page with hls.js from its npm package (make player, mk/player.mk).
lab-converge: $(LAB_STAMP)
	$(MAKE) -C $(LAB_ROOT) wheels player
	cd $(LAB_ROOT) && $(LAB_PLAYBOOK) site.yml
	cd $(LAB_ROOT) && $(LAB_PLAYBOOK) lab/client.yml

# One command: host packages, dockerd, images, containers, then site.yml.
lab: lab-up lab-converge
	@echo "mediagrid lab is up. Cluster address: http://$(LAB_NET_PREFIX).10/ (health: http://$(LAB_NET_PREFIX).10/api/v1/health)"
	@echo "Client configuration for the demo app: ~/.config/mediagrid/client.toml; try: mediagrid upload movie.mp4 --user alice"

lab-down: lab-host $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_PLAYBOOK) lab/down.yml

lab-clean: lab-down
	-docker image rm $(LAB_NODE_IMAGE) $(LAB_BASE_IMAGE)

# Measure how long the cluster VIP takes to answer from the other front
# node after `docker stop` of its holder (the lab must be up; it restarts
# the stopped node afterwards).
lab-vip-takeover: $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_ENV) python3 lab/vip_takeover.py $(LAB_VIP_ARGS)

# Verify a running cluster (make lab, or vagrant up with
# LAB_INVENTORY=inventory/vagrant) with the cluster scenario's steady tests.
lab-verify: $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_ENV) pytest -p no:cacheprovider -q --connection=ansible \
	  --ansible-inventory=$(LAB_INVENTORY) molecule/cluster/tests/steady

# Database backups (roles/backup): one now, kept on the backup store (the last front node);
# and a restore of the newest complete backup (or BACKUP=db-...mbstream) followed by the
# rebuild of what it lacks from the volumes. LAB_INVENTORY=inventory/<env> for another cluster.
db-backup: $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_PLAYBOOK) playbooks/db-backup.yml

db-restore: $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_PLAYBOOK) playbooks/db-restore.yml $(if $(BACKUP),-e mediagrid_restore_backup=$(BACKUP))

lint: $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_ENV) yamllint --strict .
	cd $(LAB_ROOT) && $(LAB_ENV) ansible-lint --profile production

# The playbooks' own checks that need no lab (the preflight against the example vault).
test-playbooks: $(LAB_STAMP)
	cd $(LAB_ROOT) && $(LAB_ENV) pytest -q -p no:cacheprovider tests/playbooks

test-lab-cluster: lab-images $(LAB_STAMP)
	$(MAKE) -C $(LAB_ROOT) wheels player
	cd $(LAB_ROOT) && $(LAB_PLAYBOOK) lab/down.yml
	cd $(LAB_ROOT) && $(LAB_ENV) molecule test -s cluster

test-lab-roles: lab-images $(LAB_STAMP)
	$(MAKE) -C $(LAB_ROOT) player
	set -e; for role in $(LAB_ROLES); do \
	  echo "== molecule test: role $$role"; \
	  (cd $(LAB_ROOT)/roles/$$role && $(LAB_ENV) molecule test) ; \
	done

# What CI runs: starts dockerd if needed, builds missing images, runs the
# cluster scenario (and the per-role scenarios unless LAB_TEST_ROLES=no),
# and leaves no lab containers behind.
test-lab: lab-images $(LAB_STAMP)
	$(MAKE) -f $(LAB_ROOT)/mk/lab.mk test-lab-cluster
	if [ "$(LAB_TEST_ROLES)" = yes ]; then $(MAKE) -f $(LAB_ROOT)/mk/lab.mk test-lab-roles; fi
