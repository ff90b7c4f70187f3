# mediagrid player: Makefile fragment, included by the top-level Makefile (or used alone:
# make -f mk/player.mk player). Target: player.
#
# The player page (roles/nginx/files/player/) plays with hls.js, taken from its npm package
# and shipped by the nginx role: no CDN, the page's CSP allows its own origin only. npm
# reads the registry from the host's own npm configuration. The tarball is checked against
# the integrity pinned here (npm's sha512 of it): a different tarball stops the build.
# Idempotent: nothing is downloaded while the checked tarball is in build/player/.

PLAYER_ROOT     := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST))/..)))
PLAYER_DIR      := $(PLAYER_ROOT)/build/player
# hls.js 1.7.4: the version MEDIA-NOTES section 8 tested, and the latest 1.x when pinned.
# Its light build (389 KB, not 624): HLS playback and ABR without subtitles, alternate
# audio, DRM or CMCD, none of which the page uses; the page starts sooner for it, since a
# browser parses every byte of the script before the first request for the video.
HLSJS_VERSION   := 1.7.4
HLSJS_INTEGRITY := sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeoBTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg==
HLSJS_TARBALL   := $(PLAYER_DIR)/hls.js-$(HLSJS_VERSION).tgz
# npm's integrity string of a file: sha512-<base64 of the digest>
player_integrity = printf 'sha512-%s' "$$(openssl dgst -sha512 -binary $(1) | base64 -w0)"

.PHONY: player
## player: hls.js (hls.light.min.js and its LICENSE) in build/player/, for the nginx role
player: $(PLAYER_DIR)/hls.light.min.js $(PLAYER_DIR)/LICENSE

$(PLAYER_DIR)/hls.light.min.js $(PLAYER_DIR)/LICENSE &: $(PLAYER_ROOT)/mk/player.mk
	@mkdir -p $(PLAYER_DIR)
	@if [ -f $(HLSJS_TARBALL) ] && [ "$$($(call player_integrity,$(HLSJS_TARBALL)))" = '$(HLSJS_INTEGRITY)' ]; then \
	  echo "hls.js $(HLSJS_VERSION): $(HLSJS_TARBALL) is there and checks"; \
	else \
	  rm -f $(HLSJS_TARBALL); \
	  echo "npm pack hls.js@$(HLSJS_VERSION)"; \
	  npm pack --ignore-scripts --silent --pack-destination $(PLAYER_DIR) hls.js@$(HLSJS_VERSION) >/dev/null; \
	fi
	@got="$$($(call player_integrity,$(HLSJS_TARBALL)))"; \
	if [ "$$got" != '$(HLSJS_INTEGRITY)' ]; then \
	  echo "ERROR: $(HLSJS_TARBALL) is not the pinned hls.js $(HLSJS_VERSION)" >&2; \
	  echo "  expected $(HLSJS_INTEGRITY)" >&2; \
	  echo "  got      $$got" >&2; \
	  rm -f $(HLSJS_TARBALL); exit 1; \
	fi
	@rm -rf $(PLAYER_DIR)/.extract && mkdir -p $(PLAYER_DIR)/.extract
	tar -xzmf $(HLSJS_TARBALL) -C $(PLAYER_DIR)/.extract package/dist/hls.light.min.js package/LICENSE
	install -m 0644 $(PLAYER_DIR)/.extract/package/LICENSE $(PLAYER_DIR)/LICENSE
	install -m 0644 $(PLAYER_DIR)/.extract/package/dist/hls.light.min.js $(PLAYER_DIR)/hls.light.min.js
	@rm -rf $(PLAYER_DIR)/.extract
