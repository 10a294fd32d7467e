"""Targeted mutation testing: break src/ one line at a time in a scratch copy and check that the named tests notice.

    python .ci/mutate.py                 # every mutation (make mutate); ~10-20 min on 2 cores
    python .ci/mutate.py --only split    # mutations whose name contains "split"
    python .ci/mutate.py --list          # names, files, tests; nothing runs

Each mutation names one snippet that must occur exactly once in its file: when the code moves on, the runner
stops before running anything and names the snippets it could not find, so update them in MUTATIONS below.
`tests` are pytest paths or node ids (no flags), so one baseline run checks that they all pass unmutated.
Exit code: 0 when every mutation was caught, 1 when one was missed or errored, 2 when a snippet drifted.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KA, REG, ENH, SPL, MET, FIT = ("tests/test_known_answers.py", "tests/test_registry.py", "tests/test_enhance.py",
                               "tests/test_split.py", "tests/test_metrics.py", "tests/test_fitted.py")


@dataclasses.dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository root
    original: str  # must occur exactly once in `file`
    replacement: str
    tests: tuple[str, ...]  # pytest paths or node ids that must fail under the mutation


M = Mutation
MUTATIONS = [
    # --- evaluate: what Table 4 scores ----------------------------------------------------------------------
    M("evaluate: heads enhance dev instead of schnell", "src/facerealism/stages/evaluate.py",
      "outputs[label] = shards.Headed(str(folder), inputs)",
      "outputs[label] = shards.Headed(str(folder), files[\"dev\"])",
      (f"{KA}::test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs",)),
    M("evaluate: scores the training pairs", "src/facerealism/stages/evaluate.py",
      "_, holdout = train_holdout(cfg)", "holdout, _ = train_holdout(cfg)",
      (f"{KA}::test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs",)),
    M("evaluate: C2ST compares dev with dev", "src/facerealism/scoring/rows.py",
      "for row in (DEV_REF, label)]", "for row in (DEV_REF, DEV_REF)]",
      (f"{KA}::test_table4_c2st_tells_schnell_from_dev_but_not_dev_from_another_dev_sample",)),
    M("evaluate: controls not scored", "src/facerealism/stages/evaluate.py",
      "for name in cfg.evaluate.controls}", "for name in []}",
      ("tests/test_evaluate.py::test_evaluate_stage_with_an_extra_head_and_report",)),
    M("evaluate: SSIM against dev, not the input", "src/facerealism/scoring/table4.py",
      "metrics.ssim_pairs(pair.inputs, pair.images)", "metrics.ssim_pairs(pair.twins, pair.images)",
      (f"{KA}::test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs",)),
    M("evaluate: schnell and dev references swapped", "src/facerealism/scoring/rows.py",
      "metrics.fd_row(feats[space][label], feats[space][SCHNELL], feats[space][DEV_REF],",
      "metrics.fd_row(feats[space][label], feats[space][DEV_REF], feats[space][SCHNELL],",
      (f"{KA}::test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs",)),
    M("evaluate: gate key holds FD to schnell", "src/facerealism/scoring/table4.py",
      'flat[f"fd_diff.{space}"] = r["fd_diff"]', 'flat[f"fd_diff.{space}"] = r["fd_schnell"]',
      (f"{KA}::test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs",)),
    M("evaluate: FD intervals not re-centred on their estimate", "src/facerealism/metrics/frechet.py",
      "shift = out[name] - q[1, i]", "shift = 0.0",
      ("tests/test_metrics.py::test_fd_row_intervals_bracket_their_own_estimate_where_repeated_rows_inflate_the_fd",)),
    # --- train: what the head learns from and which generator ships ------------------------------------------
    M("train: ships G_B (dev -> schnell)", "src/facerealism/trainers/cyclegan.py",
      'head_name = "G_A"', 'head_name = "G_B"',
      (f"{KA}::test_the_shipped_head_moves_schnell_toward_dev",)),
    M("train: trains on the whole manifest", "src/facerealism/stages/train.py",
      'train_rows, validation_rows = parts["train"], parts["validation"]',
      'train_rows, validation_rows = __import__("pandas").concat(list(parts.values()), ignore_index=True), parts["validation"]',
      (f"{KA}::test_training_loads_only_training_pairs",)),
    # --- register: the gate and the champion ------------------------------------------------------------------
    M("register: a split change is never seen", "src/facerealism/mlops/registry.py",
      "split_changed = champ is not None and champ_split != split", "split_changed = False",
      (f"{REG}::test_a_new_held_out_split_is_judged_on_absolute_thresholds_or_refused",)),
    M("register: settle compares across splits", "src/facerealism/mlops/registry.py",
      'mv.tags.get("gate.passed") == "True" and split == cur_split and', 'mv.tags.get("gate.passed") == "True" and',
      (f"{REG}::test_a_new_held_out_split_is_judged_on_absolute_thresholds_or_refused",)),
    M("register: on_split_change=fail ignored", "src/facerealism/scoring/gate.py",
      'if r.on_split_change == "fail":', "if False:",
      (f"{REG}::test_a_new_held_out_split_is_judged_on_absolute_thresholds_or_refused",)),
    M("gate: margin over champion dropped", "src/facerealism/scoring/gate.py",
      "elif ours <= champion[key] + margin:", "elif ours <= champion[key]:",
      (f"{REG}::test_gate_needs_the_margin_over_the_champion",)),
    M("gate: a tie with the champion wins", "src/facerealism/scoring/gate.py",
      "elif ours <= champion[key] + margin:", "elif ours < champion[key] + margin:",
      (f"{REG}::test_gate_needs_the_margin_over_the_champion",)),
    M("settle: margin dropped", "src/facerealism/mlops/registry.py",
      "best_value <= cur_metrics.get(key, -math.inf) + margin", "best_value <= cur_metrics.get(key, -math.inf)",
      (f"{REG}::test_settle_keeps_a_champion_that_a_newer_version_beats_by_less_than_the_margin",)),
    M("gate: required thresholds not enforced", "src/facerealism/scoring/gate.py",
      "        elif value <= bound:\n            passed = False\n",
      "        elif value <= bound:\n            pass\n",
      ("tests/test_stages.py::test_gate_policy_unit",)),
    M("gate: upper bounds not enforced", "src/facerealism/scoring/gate.py",
      "        elif value >= limit:\n            passed = False\n", "        elif value >= limit:\n            pass\n",
      ("tests/test_realism_gate.py::test_every_control_fails_the_default_gate_and_dev_passes",)),
    M("gate: a control that passes is not reported", "src/facerealism/scoring/gate.py",
      "fooled = [label for label, r in rows.items() if label not in positives and r[\"passed\"]]", "fooled = []",
      ("tests/test_realism_gate.py::test_a_gate_on_fd_diff_alone_is_caught_being_fooled",)),
    M("gate: photo checks not enforced", "src/facerealism/scoring/gate.py",
      "elif value > bound:", "elif value > 1e9:",
      ("tests/test_stages.py::test_gate_policy_unit",
       "tests/test_photo.py::test_the_photo_check_fails_a_head_that_rings_clips_or_paints_grain")),
    # --- the safety net where it acts (register), the dev check, fitted baselines, controls that act -----------
    M("register: an unsound metric suite does not block promotion", "src/facerealism/mlops/registry.py",
      "passed, reasons = passed and beats and suite[0], reasons + why + suite[1]",
      "passed, reasons = passed and beats, reasons + why + suite[1]",
      (f"{REG}::test_the_safety_net_blocks_promotion_where_it_acts",)),
    M("register: the head is not compared with the fitted baselines", "src/facerealism/mlops/registry.py",
      "passed, reasons = passed and beats and suite[0], reasons + why + suite[1]",
      "passed, reasons = passed and suite[0], reasons + why + suite[1]",
      (f"{REG}::test_the_safety_net_blocks_promotion_where_it_acts",)),
    M("gate: overlapping CIs beat the fitted baseline", "src/facerealism/scoring/gate.py",
      "    if ours >= theirs:", "    if ours >= theirs + 0.1:",
      (f"{REG}::test_the_safety_net_blocks_promotion_where_it_acts",)),
    M("gate: a failing dev check is not reported", "src/facerealism/scoring/gate.py",
      'if not rows[dev]["passed"]:', "if False:",
      (f"{REG}::test_the_safety_net_blocks_promotion_where_it_acts",)),
    M("evaluate: the dev check is dev judged against itself", "src/facerealism/scoring/rows.py",
      "{SCHNELL: schnell, DEV: dev_check, DEV_REF: dev, **outputs}", "{SCHNELL: schnell, DEV: dev, DEV_REF: dev, **outputs}",
      (f"{KA}::test_table4_c2st_tells_schnell_from_dev_but_not_dev_from_another_dev_sample",)),
    M("controls: clipped highlights stop changing the image", "src/facerealism/scoring/controls.py",
      "return np.clip(images.astype(np.float64) * gain + 0.5, 0, 255).astype(np.uint8)", "return images.copy()",
      ("tests/test_realism_gate.py::test_every_control_changes_its_input_by_a_measurable_amount",)),
    M("controls: grain lands nowhere", "src/facerealism/scoring/controls.py",
      "out.append(np.clip(x + flat * field + 0.5, 0, 255).astype(np.uint8))",
      "out.append(np.clip(x + 0 * flat * field + 0.5, 0, 255).astype(np.uint8))",
      ("tests/test_realism_gate.py::test_every_control_changes_its_input_by_a_measurable_amount",)),
    M("metrics: edge overshoot not measured", "src/facerealism/metrics/damage.py",
      "over = np.maximum(y - hi, 0) + np.maximum(lo - y, 0)", "over = 0 * y",
      ("tests/test_photo.py::test_the_photo_check_fails_a_head_that_rings_clips_or_paints_grain",)),
    M("metrics: grain on flat regions not measured", "src/facerealism/metrics/damage.py",
      "grain = change - ndimage.uniform_filter(change, size=(1, window, window))", "grain = 0 * change",
      ("tests/test_photo.py::test_the_photo_check_fails_a_head_that_rings_clips_or_paints_grain",
       f"{MET}::test_flat_grain_sees_texture_on_flat_regions_and_not_sharpening_or_tone")),
    M("train: the paired term ignores its low-pass", "src/facerealism/models/patchgan.py",
      "    if sigma <= 0:\n        return images\n", "    if True:\n        return images\n",
      ("tests/test_train.py::test_low_pass_paired_term_ignores_the_texture_instance_but_not_the_content",)),
    M("split: no validation split", "src/facerealism/data/split.py",
      'return "validation" if bucket < (test_fraction + validation_fraction) * 10_000 else "train"', 'return "train"',
      (SPL,)),
    M("fitted: pairs not aligned before the fit", "src/facerealism/scoring/fitted.py",
      "yield schnell, align(schnell, dev, max_shift)", "yield schnell, dev",
      ("tests/test_fitted.py::test_the_linear_filter_recovers_a_sharpening_kernel_through_a_one_pixel_shift",)),
    # --- the fitted baselines a head must beat: the equalisers, the photo rules on fitted rows, the honest champion --
    M("fitted: best_fitted takes the weakest (max, not min)", "src/facerealism/scoring/fitted_rows.py",
      'return min(labels, key=lambda l: (rows[l]["c2st_vs_dev"], rows[l]["c2st_ci"][1]), default=None)',
      'return max(labels, key=lambda l: (rows[l]["c2st_vs_dev"], rows[l]["c2st_ci"][1]), default=None)',
      (f"{FIT}::test_the_best_fitted_baseline_is_the_nearest_dev_of_those_that_pass_the_photo_rules",)),
    M("fitted: a photo-damaging fitted baseline is the one to beat", "src/facerealism/scoring/fitted_rows.py",
      'if fitted.is_fitted(label) and rows[label].get("photo_passes")]', "if fitted.is_fitted(label)]",
      (f"{FIT}::test_the_best_fitted_baseline_is_the_nearest_dev_of_those_that_pass_the_photo_rules",)),
    M("evaluate: fitted rows pass the photo rules unchecked", "src/facerealism/stages/evaluate.py",
      'row["photo_passes"] = meets_photo_rules(row["photo"], limits)', 'row["photo_passes"] = True',
      ("tests/test_evaluate.py::test_evaluate_stage_with_an_extra_head_and_report",)),
    M("evaluate: photo-safe guards tuned on the test split", "src/facerealism/scoring/fitted_rows.py",
      'validation=pair_batches(parts["validation"])', 'validation=pair_batches(parts["test"])',
      (f"{FIT}::test_the_fits_read_the_training_and_validation_pairs_never_the_test_split",)),
    M("evaluate: photo_check reports the best size, not the worst", "src/facerealism/scoring/photo.py",
      "worst = {key: max(values.values()) for key, values in by_size.items()}",
      "worst = {key: min(values.values()) for key, values in by_size.items()}",
      ("tests/test_photo.py::test_the_photo_check_reports_the_worst_size_of_each_rule",)),
    M("controls: detail gain ×2 applied at ×1", "src/facerealism/scoring/controls.py",
      '"detail gain ×2": Control(lambda x, rng, donors: _detail_gain(x, 2.0)),',
      '"detail gain ×2": Control(lambda x, rng, donors: _detail_gain(x, 1.0)),',
      ("tests/test_realism_gate.py::test_no_two_controls_are_the_same_filter",)),
    M("fitted: equaliser gain is the power ratio, not its square root", "src/facerealism/scoring/fitted.py",
      "return np.sqrt(self.dev / np.maximum(self.schnell, 1e-12))", "return self.dev / np.maximum(self.schnell, 1e-12)",
      (f"{FIT}::test_the_equaliser_recovers_a_known_radial_gain_per_channel",)),
    M("fitted: equaliser keeps only the last batch's spectra", "src/facerealism/scoring/fitted.py",
      "total[c] += radial_power(planes[:, c], self.n_bins).sum(axis=0)",
      "total[c] = radial_power(planes[:, c], self.n_bins).sum(axis=0)",
      (f"{FIT}::test_fitting_from_two_batches_equals_fitting_from_one",)),
    M("fitted: chroma boost not capped", "src/facerealism/scoring/fitted.py",
      "out[1:] = np.minimum(gains[1:], ceiling)", "out[1:] = gains[1:]",
      (f"{FIT}::test_the_photo_safe_guards_cap_chroma_fade_out_on_flat_pixels_and_clamp_edges",)),
    M("fitted: the boost does not fade out on flat pixels", "src/facerealism/scoring/fitted.py",
      "out = e if flat_quantile <= 0 else self.x + self.fade(flat_quantile) * (e - self.x)", "out = e",
      (f"{FIT}::test_the_photo_safe_guards_cap_chroma_fade_out_on_flat_pixels_and_clamp_edges",)),
    M("fitted: no clamp at strong edges", "src/facerealism/scoring/fitted.py",
      "out = np.where(self.edges, np.clip(out, self.low - edge_margin, self.high + edge_margin), out)", "pass",
      (f"{FIT}::test_the_photo_safe_guards_cap_chroma_fade_out_on_flat_pixels_and_clamp_edges",)),
    M("fitted: guards chosen farthest from dev", "src/facerealism/scoring/fitted.py",
      'for i in np.argsort(distance, kind="stable"):', 'for i in np.argsort(-distance, kind="stable"):',
      (f"{FIT}::test_the_guards_are_the_nearest_dev_setting_whose_damage_stays_within_the_limits",)),
    M("fitted: guards chosen blind to their damage", "src/facerealism/scoring/fitted.py",
      "            if any(worst[k] > limits[k] for k in limits):\n                return False, worst\n",
      "            if False:\n                return False, worst\n",
      (f"{FIT}::test_the_guards_are_the_nearest_dev_setting_whose_damage_stays_within_the_limits",)),
    M("gate: no photo-safe fitted baseline counts as none scored", "src/facerealism/scoring/gate.py",
      'if not best and is_number(candidate.get("fitted.scored")) and candidate["fitted.scored"] > 0:', "if False:",
      (f"{REG}::test_the_head_must_beat_the_best_fitted_baseline_that_passes_the_photo_rules",)),
    M("register: a fitted filter is registered without passing the gate", "src/facerealism/stages/register.py",
      "    if not passed:\n        return out\n", "    if False:\n        return out\n",
      (f"{REG}::test_nothing_is_promoted_when_the_fitted_filter_fails_the_gate_too",)),
    M("register: the fitted filter is named as the learned head", "src/facerealism/stages/register.py",
      '"kind": "fitted filter", "recipe": f"fitted: {fname}",', '"kind": "learned head", "recipe": "esa_cyclegan",',
      (f"{REG}::test_a_fitted_filter_that_passes_the_gate_is_promoted_named_as_fitted",)),
    M("register: a fitted filter is tried after the head was promoted", "src/facerealism/stages/register.py",
      '    if head["promoted"]:\n', "    if False:\n",
      (f"{REG}::test_a_promoted_head_or_promote_fitted_off_leaves_the_fitted_filter_alone",)),
    M("registry: the fitted filter must beat itself", "src/facerealism/mlops/registry.py",
      '"passes the photo rules)"]) if fitted_filter else beats_fitted(cfg, candidate)',
      '"passes the photo rules)"]) if False else beats_fitted(cfg, candidate)',
      (f"{REG}::test_a_fitted_filter_that_passes_the_gate_is_promoted_named_as_fitted",)),
    # --- placement, halos beside edges, the C2ST's spread (issue 34) ---------------------------------------------
    M("placement: layout held against another face's dev", "src/facerealism/metrics/placement.py",
      "zip(detail_layout(images, grids), detail_layout(twins, grids))",
      "zip(detail_layout(images, grids), detail_layout(np.roll(twins, 1, axis=0), grids))",
      ("tests/test_placement.py::test_texture_in_its_own_place_gains_and_pasted_texture_loses",)),
    M("placement: pasted texture is its own twin's", "src/facerealism/scoring/controls.py",
      "return [(i - 1) % n for i in range(lo, hi)]", "return list(range(lo, hi))",
      ("tests/test_placement.py::test_texture_in_its_own_place_gains_and_pasted_texture_loses",)),
    M("placement: the skin mask is everywhere", "src/facerealism/scoring/controls.py",
      "return ndimage.gaussian_filter(box.astype(np.float64), sigma=(0, 1, 1))[..., None]",
      "return np.ones_like(box, dtype=np.float64)[..., None]",
      ("tests/test_placement.py::test_the_skin_only_paste_stays_on_skin",)),
    M("placement: the gate does not require it", "params.yaml",
      "    placement.gain_ci_low: 0.0", "",
      ("tests/test_realism_gate.py::test_misplaced_texture_fails_the_gate_while_the_oracle_and_dev_pass",)),
    M("oracle: a failing oracle is not reported", "src/facerealism/scoring/gate.py",
      'if controls.ORACLE in rows and not rows[controls.ORACLE]["passed"]:', "if False:",
      ("tests/test_realism_gate.py::test_a_gate_that_rejects_the_oracle_is_reported_unsound",)),
    M("oracle: the oracle pastes another face's texture", "src/facerealism/scoring/controls.py",
      "return np.clip(images.astype(np.float64) + _high_pass(dev) + 0.5, 0, 255).astype(np.uint8)",
      "return np.clip(images.astype(np.float64) + _high_pass(np.roll(dev, 1, axis=0)) + 0.5, 0, 255).astype(np.uint8)",
      ("tests/test_placement.py::test_texture_in_its_own_place_gains_and_pasted_texture_loses",)),
    M("halo: texture counted as halo (change not smoothed)", "src/facerealism/metrics/damage.py",
      "y = x + ndimage.gaussian_filter(y - x, sigma=(0, smooth, smooth))", "y = y",
      ("tests/test_placement.py::test_light_bands_and_halos_beside_edges_exceed_devs_own_overshoot",)),
    M("halo: the light band lands nowhere", "src/facerealism/scoring/controls.py",
      "return np.clip(x + lift * band + 0.5, 0, 255).astype(np.uint8)",
      "return np.clip(x + 0 * lift * band + 0.5, 0, 255).astype(np.uint8)",
      ("tests/test_placement.py::test_light_bands_and_halos_beside_edges_exceed_devs_own_overshoot",)),
    M("halo: not a gate rule", "params.yaml",
      "    halo.vs_dev: 1.5", "",
      ("tests/test_realism_gate.py::test_halos_beside_the_portraits_edges_fail_and_dev_does_not",)),
    M("spread: one fold seed", "src/facerealism/scoring/rows.py",
      "for k in range(cfg.evaluate.c2st_seeds)]", "for k in range(1)]",
      ("tests/test_realism_gate.py::test_the_c2st_is_reported_over_fold_seeds_and_both_halves_and_the_gate_reads_the_worst",)),
    M("spread: the halves never swap", "src/facerealism/scoring/rows.py",
      "    if outputs_check is not None and schnell_check is not None:\n        rows = {DEV_REF",
      "    if False:\n        rows = {DEV_REF",
      ("tests/test_realism_gate.py::test_the_c2st_is_reported_over_fold_seeds_and_both_halves_and_the_gate_reads_the_worst",)),
    M("spread: the worst run is the luckiest", "src/facerealism/scoring/rows.py",
      '"worst": max(acc)', '"worst": min(acc)',
      ("tests/test_realism_gate.py::test_the_c2st_is_reported_over_fold_seeds_and_both_halves_and_the_gate_reads_the_worst",)),
    M("spread: the gate reads seed 0", "src/facerealism/scoring/table4.py",
      'flat["c2st.dev_vs_enhanced_worst"], flat["c2st.dev_vs_enhanced_best"] = runs["worst"], runs["best"]',
      'flat["c2st.dev_vs_enhanced_worst"], flat["c2st.dev_vs_enhanced_best"] = head["c2st_vs_dev"], runs["best"]',
      ("tests/test_realism_gate.py::test_the_c2st_is_reported_over_fold_seeds_and_both_halves_and_the_gate_reads_the_worst",)),
    M("gate: throughput floor not enforced", "src/facerealism/scoring/gate.py",
      "elif speed < r.min_images_per_s:", "elif speed < 0:",
      (f"{REG}::test_gate_thresholds_throughput_and_split",)),
    # --- the held-out split -----------------------------------------------------------------------------------
    M("split: salted hash()", "src/facerealism/data/split.py",
      'int.from_bytes(hashlib.sha256((salt + pair_id).encode()).digest()[:4], "little") % 10_000',
      "hash(salt + pair_id) % 10_000",
      (SPL,)),
    M("split: another stable hash", "src/facerealism/data/split.py",
      'hashlib.sha256((salt + pair_id).encode()).digest()[:4], "little"',
      'hashlib.md5((salt + pair_id).encode()).digest()[:4], "little"',
      (SPL,)),
    M("split: by row position", "src/facerealism/data/split.py",
      'mask = manifest["id"].map(lambda i: is_holdout(str(i), fraction)).astype(bool)',
      'mask = pd.Series([is_holdout(str(n), fraction) for n in range(len(manifest))], index=manifest.index)',
      (SPL,)),
    M("split: train and held-out swapped", "src/facerealism/data/split.py",
      "return manifest[~mask].reset_index(drop=True), manifest[mask].reset_index(drop=True)",
      "return manifest[mask].reset_index(drop=True), manifest[~mask].reset_index(drop=True)",
      (SPL,)),
    # --- metrics ----------------------------------------------------------------------------------------------
    M("metrics: FD_diff sign flipped", "src/facerealism/metrics/frechet.py",
      'out: dict = {"fd_schnell": fd_s, "fd_dev": fd_d, "fd_diff": fd_s - fd_d}',
      'out: dict = {"fd_schnell": fd_s, "fd_dev": fd_d, "fd_diff": fd_d - fd_s}',
      (f"{KA}::test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs",)),
    M("metrics: Frechet cross term halved", "src/facerealism/metrics/frechet.py",
      "- 2.0 * _trace_sqrt_product(a_c, b_c)", "- 1.0 * _trace_sqrt_product(a_c, b_c)",
      (f"{MET}::test_frechet_matches_closed_form",)),
    M("metrics: C2ST accuracy over one class", "src/facerealism/metrics/c2st.py",
      '"accuracy": correct / (2 * n)', '"accuracy": correct / n',
      (f"{MET}::test_c2st_same_distribution_is_chance_and_seeded",)),
    M("metrics: C2ST pairs split across folds", "src/facerealism/metrics/c2st.py",
      "fold_of = np.tile(rng.permutation(n) % folds, 2)", "fold_of = rng.permutation(2 * n) % folds",
      (f"{MET}::test_c2st_identical_sets_is_chance",)),
    M("metrics: chroma space reads luminance", "src/facerealism/metrics/spaces.py",
      "radial_log_power(_ycbcr(images, c), n_bins, chunk) for c in (1, 2)",
      "radial_log_power(_ycbcr(images, 0), n_bins, chunk) for c in (1, 2)",
      (f"{MET}::test_c2st_sees_colour_speckle_that_luminance_cannot",)),
    M("metrics: colour noise gain ignores the luminance gain", "src/facerealism/metrics/spaces.py",
      "return float((ratio[:, 1:] / np.maximum(ratio[:, :1], 1.0)).max())", "return float(ratio[:, 1:].max())",
      ("tests/test_photo.py::test_grain_tinted_by_the_pixel_colour_is_not_colour_noise",)),
    M("metrics: spectral features without the window", "src/facerealism/metrics/spaces.py",
      "np.fft.fft2(p * window)", "np.fft.fft2(p)",
      (f"{MET}::test_spectral_features_of_a_smooth_ramp_leak_no_high_frequency_power",)),
    # --- head I/O ---------------------------------------------------------------------------------------------
    M("enhance: no crop back for sides not divisible by 4", "src/facerealism/head.py",
      "return enhance_array(G, padded, batch_size, device)[:, :h, :w]",
      "return enhance_array(G, padded, batch_size, device)",
      (f"{ENH}::test_sides_not_divisible_by_four_come_back_at_their_own_size",)),
    M("enhance: crops the wrong corner", "src/facerealism/head.py",
      "return enhance_array(G, padded, batch_size, device)[:, :h, :w]",
      "return enhance_array(G, padded, batch_size, device)[:, -h:, -w:]",
      (f"{ENH}::test_sides_not_divisible_by_four_come_back_at_their_own_size",)),
    M("head: mismatched weights load silently", "src/facerealism/head.py",
      "if missing or unexpected:", "if False:",
      (f"{ENH}::test_a_saved_head_loads_back_as_the_same_function_or_fails_naming_the_file",)),
    M("head: uint8 conversion truncates", "src/facerealism/data/split.py",
      ".mul(127.5).round().byte()", ".mul(127.5).byte()",
      (f"{KA}::test_evaluate_scores_the_heads_on_the_schnell_images_of_the_held_out_pairs",)),
    # --- the DAG: what a killed or failed run leaves for the next one ---------------------------------------------
    M("dag: a finished stage is not recorded in dvc.lock", "src/facerealism/orchestration/dag.py",
      "        commit(p.project, name)\n", "        pass\n",
      ("tests/test_dag.py::test_killed_runs_resume_then_noop_rerun_and_one_param_change",)),
    M("dag: a torn dvc.lock is kept", "src/facerealism/orchestration/dag.py",
      "if not lock.exists() or _lock_whole(lock) or not good.exists():", "if True:",
      ("tests/test_dag_records.py::test_a_torn_dvc_lock_is_restored_from_the_last_good_copy",)),
    M("dag: a failed push is forgotten", "src/facerealism/orchestration/dag.py",
      "if p.incremental and push and owed.exists():", "if p.incremental and push and owed.exists() and p.ran:",
      ("tests/test_dag_records.py::test_a_push_that_failed_stays_owed_until_a_later_run_pushes_it",)),
    # --- preflight, profiles and recipe names ------------------------------------------------------------------------
    M("preflight: the gate's metrics are not checked against evaluate's", "src/facerealism/orchestration/preflight.py",
      "        if metric not in written:\n", "        if False:\n",
      ("tests/test_preflight.py::test_a_planted_inconsistency_fails_in_one_line_naming_the_keys",)),
    M("preflight: the detail head without residual output passes", "src/facerealism/orchestration/preflight.py",
      "    if t.detail and not t.residual_output and t.model != \"unet_cbam\":", "    if False:",
      ("tests/test_preflight.py::test_a_planted_inconsistency_fails_in_one_line_naming_the_keys",)),
    M("profiles: a profile's section replaces its base's instead of merging", "src/facerealism/config/profile.py",
      "        if section is not None and isinstance(value, dict)", "        if False and isinstance(value, dict)",
      ("tests/test_preflight.py::test_a_profile_is_an_overlay_and_config_says_where_each_value_came_from",)),
    M("recipe: the paired detail head is called ESA-CycleGAN", "src/facerealism/config/architectures.py",
      '(True, True, True): ("detail_paired", "detail-gain {net} head (paired)")',
      '(True, True, True): ("cyclegan", "{cyclegan}")',
      ("tests/test_paper.py::test_recipe_names_are_truthful",)),
]


def check_snippets(mutations: list[Mutation]) -> list[str]:
    """Why each mutation cannot be applied (its snippet is gone or ambiguous); empty when all apply."""
    problems = []
    for m in mutations:
        path = ROOT / m.file
        count = path.read_text().count(m.original) if path.exists() else -1
        if count != 1:
            where = "file is missing" if count < 0 else f"snippet found {count} times, expected once"
            problems.append(f"{m.name}: {m.file}: {where}: {m.original!r}")
    return problems


def scratch_copy(dest: Path) -> None:
    """The working tree as git sees it (tracked plus untracked, not ignored): no data, models or caches."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def pytest(scratch: Path, tests: tuple[str, ...], timeout: float) -> tuple[int | None, float, str]:
    """(exit code or None on timeout, seconds, output tail) of pytest on `tests` inside the scratch copy."""
    env = {**os.environ, "PYTHONPATH": f"{scratch / 'src'}{os.pathsep}{scratch}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    try:
        res = subprocess.run(cmd, cwd=scratch, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return None, time.monotonic() - start, str(e.stdout or "")[-2000:]
    return res.returncode, time.monotonic() - start, (res.stdout + res.stderr)[-2000:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="", help="run the mutations whose name contains this text")
    ap.add_argument("--list", action="store_true", help="print the mutations and exit")
    ap.add_argument("--no-baseline", action="store_true", help="skip checking that the tests pass unmutated")
    ap.add_argument("--timeout", type=float, default=600, help="seconds per pytest run")
    args = ap.parse_args()
    chosen = [m for m in MUTATIONS if args.only.lower() in m.name.lower()]
    if args.list:
        for m in chosen:
            print(f"{m.name}\n    {m.file}\n    {' '.join(m.tests)}")
        return 0
    problems = check_snippets(chosen)
    if problems:
        print("error: the code drifted from these mutations; update their snippets in .ci/mutate.py:", file=sys.stderr)
        print("\n".join(f"  {p}" for p in problems), file=sys.stderr)
        return 2
    if not chosen:
        print(f"error: no mutation name contains {args.only!r}", file=sys.stderr)
        return 2

    with tempfile.TemporaryDirectory(prefix="facerealism-mutate-") as tmp:
        scratch = Path(tmp)
        scratch_copy(scratch)
        probe = subprocess.run([sys.executable, "-c", "import facerealism; print(facerealism.__file__)"], cwd=scratch,
                               env={**os.environ, "PYTHONPATH": str(scratch / "src")}, capture_output=True, text=True)
        if not probe.stdout.strip().startswith(str(scratch)):
            print(f"error: the scratch copy's facerealism is not the one imported: {probe.stdout}{probe.stderr}",
                  file=sys.stderr)
            return 1
        if not args.no_baseline:
            tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
            rc, seconds, tail = pytest(scratch, tests, args.timeout * 2)
            if rc != 0:
                print(f"error: the targeted tests fail without any mutation (rc {rc}):\n{tail}", file=sys.stderr)
                return 1
            print(f"baseline: {len(tests)} test selections pass unmutated ({seconds:.0f} s)", flush=True)
        results = []
        for m in chosen:
            path = scratch / m.file
            text = path.read_text()
            path.write_text(text.replace(m.original, m.replacement))
            try:
                rc, seconds, tail = pytest(scratch, m.tests, args.timeout)
            finally:
                path.write_text(text)
            verdict = {0: "MISSED", 1: "caught"}.get(rc, "TIMEOUT" if rc is None else f"ERROR (pytest rc {rc})")
            results.append((m, verdict, seconds))
            print(f"{verdict:<8} {seconds:5.0f} s  {m.name}", flush=True)
            if verdict.startswith(("ERROR", "TIMEOUT")):
                print(tail, file=sys.stderr)

    width = max(len(m.name) for m, _, _ in results)
    print(f"\n| {'mutation':<{width}} | file | result |\n|{'-' * (width + 2)}|---|---|")
    for m, verdict, seconds in results:
        print(f"| {m.name:<{width}} | {m.file.removeprefix('src/facerealism/')} | {verdict} ({seconds:.0f} s) |")
    caught = sum(v == "caught" for _, v, _ in results)
    print(f"\n{caught}/{len(results)} mutations caught")
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
