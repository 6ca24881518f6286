"""RL pieces on small hand-made tensors, against values worked out by hand (arithmetic in the comments):
GAE (PPO), group-relative advantages (GRPO, Dr. GRPO), the clipped surrogate with clip-higher (DAPO),
loss aggregation, the value loss, KL estimators, dynamic sampling and logit helpers."""

import math

import pytest
import torch

from cmt.lm_head import entropy_from_logits, token_logprobs
from cmt.rl.advantages import AdvantageInputs, agreeing_groups, compute_advantages, gae, group_relative
from cmt.rl.filters import SamplingRound, gather_groups, varied_groups
from cmt.rl.losses import aggregate, kl_penalty, policy_loss, ppo_clip, value_loss
from cmt.rl.masked import completion_mask, masked_mean, masked_whiten

T = torch.tensor


def close(actual, expected, tol=1e-5):
    torch.testing.assert_close(actual.float(), T(expected).float(), atol=tol, rtol=0)


# --- masks -------------------------------------------------------------------------------------------

def test_completion_mask_and_masked_reductions():
    mask = completion_mask(T([3, 1]), 4)
    close(mask, [[1, 1, 1, 0], [1, 0, 0, 0]])
    values = T([[1.0, 2.0, 3.0, 100.0], [4.0, 100.0, 100.0, 100.0]])
    close(masked_mean(values, mask), 2.5)            # (1 + 2 + 3 + 4) / 4
    close(masked_mean(values, mask, dim=1), [2.0, 4.0])
    close(masked_mean(values, torch.zeros_like(mask)), 0.0)  # empty mask: 0, not nan
    # Whitening of [1, 2, 3, 4]: mean 2.5, population std sqrt(1.25) = 1.11803.
    close(masked_whiten(values, mask), [[-1.341641, -0.447214, 0.447214, 0], [1.341641, 0, 0, 0]])


# --- GAE ---------------------------------------------------------------------------------------------

REWARDS = T([[0.0, 0.0, 1.0], [0.0, 1.0, 5.0]])   # row 2's third token is padding (its 5 must not leak)
VALUES = T([[0.5, 0.6, 0.7], [0.2, 0.4, 9.0]])
MASK = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])


def test_gae_by_hand():
    advantages, returns = gae(REWARDS, VALUES, MASK, gamma=1.0, lam=0.9)
    # Row 1: d2 = 1 - .7 = .3 -> A2 = .3 ; d1 = 0 + .7 - .6 = .1 -> A1 = .1 + .9 * .3 = .37 ;
    #        d0 = .6 - .5 = .1 -> A0 = .1 + .9 * .37 = .433.  Returns = A + V = [.933, .97, 1.0].
    # Row 2: t2 is padding -> 0, and V after the last token is 0: d1 = 1 - .4 = .6 -> A1 = .6 ;
    #        d0 = .4 - .2 = .2 -> A0 = .2 + .9 * .6 = .74.  Returns = [.94, 1.0, 0].
    close(advantages, [[0.433, 0.37, 0.3], [0.74, 0.6, 0.0]])
    close(returns, [[0.933, 0.97, 1.0], [0.94, 1.0, 0.0]])


def test_gae_discounts():
    advantages, _ = gae(REWARDS[:1], VALUES[:1], MASK[:1], gamma=0.5, lam=0.9)
    # d2 = 1 - .7 = .3 -> A2 = .3 ; d1 = .5 * .7 - .6 = -.25 -> A1 = -.25 + .45 * .3 = -.115 ;
    # d0 = .5 * .6 - .5 = -.2 -> A0 = -.2 + .45 * -.115 = -.25175.
    close(advantages, [[-0.25175, -0.115, 0.3]])


def test_gae_estimator_whitens_valid_tokens_and_needs_values():
    out = compute_advantages("gae", AdvantageInputs(REWARDS, MASK, values=VALUES, gamma=1.0, lam=0.9, whiten=True))
    valid = out.advantages[MASK.bool()]
    close(valid.mean(), 0.0)
    close(valid.pow(2).mean(), 1.0, tol=1e-4)      # population std 1
    assert out.advantages[1, 2] == 0.0
    close(out.returns, [[0.933, 0.97, 1.0], [0.94, 1.0, 0.0]])  # targets are not whitened
    with pytest.raises(ValueError, match="needs critic values"):
        compute_advantages("gae", AdvantageInputs(REWARDS, MASK))
    with pytest.raises(ValueError, match="choose one of gae, grpo"):
        compute_advantages("vtrace", AdvantageInputs(REWARDS, MASK))


# --- group-relative ----------------------------------------------------------------------------------

SCORES = T([1.0, 0.0, 1.0, 1.0])  # two groups of two: [1, 0] varies, [1, 1] is constant


@pytest.mark.parametrize("scale, expected", [
    # Group 1: mean .5, sample std sqrt((.25 + .25) / 1) = .70711 -> +-.5 / .70711 = +-.70711.
    ("group", [0.707107, -0.707107, 0.0, 0.0]),
    # Batch: mean .75, sample var (3 * .0625 + .5625) / 3 = .25 -> std .5 -> +-.5 / .5 = +-1.
    ("batch", [1.0, -1.0, 0.0, 0.0]),
    # Dr. GRPO: the centred rewards, unscaled.
    ("none", [0.5, -0.5, 0.0, 0.0]),
])
def test_group_relative_scales(scale, expected):
    close(group_relative(SCORES, 2, scale), expected)


def test_group_relative_continuous_rewards_and_degenerate_groups():
    # [1.5, 0] -> mean .75 -> +-.75; [.2, .2] constant -> 0 exactly.
    close(group_relative(T([1.5, 0.0, 0.2, 0.2]), 2, "none"), [0.75, -0.75, 0.0, 0.0])
    assert (group_relative(T([0.3, 0.3, 0.3]), 3, "group") == 0).all()   # no nan from a zero std
    assert (group_relative(T([1.0, 0.0]), 1, "group") == 0).all()        # groups of one: no baseline signal
    with pytest.raises(ValueError, match="groups of 3"):
        group_relative(SCORES, 3)
    with pytest.raises(ValueError, match="group, batch, none"):
        group_relative(SCORES, 2, "token")


def test_outcome_scale_keeps_calibration_noise_small_where_outcomes_agree():
    """CCRL rewards = outcome + calibration. An all-wrong group differs only by confidence noise: GRPO's group
    std scales that noise up to full-size advantages; the outcome scale leaves it at its own size (the
    fallback 1, as no outcome varies) and scales a mixed group by the spread of its outcomes."""
    scores = T([0.01, 0.03, -0.01, 0.01, 1.05, 0.02, 0.98, -0.01])
    outcomes = T([0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    assert float(group_relative(scores, 4, "group")[:4].abs().max()) > 1.0
    advantages = group_relative(scores, 4, "outcome", outcomes=outcomes)
    close(advantages[:4], [0.0, 0.02, -0.02, 0.0])
    # Mixed: mean .51, outcome std sqrt(1/3) = .57735.
    close(advantages[4:], [(s - 0.51) / 0.57735 for s in (1.05, 0.02, 0.98, -0.01)], tol=1e-4)
    assert float(advantages[:4].abs().max()) < 0.05 < float(advantages[4:].abs().min())
    with pytest.raises(ValueError, match="outcome term"):
        group_relative(scores, 4, "outcome")
    inputs = AdvantageInputs(scores[:, None], torch.ones(8, 1), group_size=4, scale="outcome", outcomes=outcomes)
    close(compute_advantages("grpo", inputs).advantages[:, 0], advantages)


def test_agreeing_groups_counts_groups_whose_outcomes_agree_whatever_their_rewards():
    # All wrong (rewards differ by calibration), mixed, all right.
    assert agreeing_groups(T([0.0, 0.0, 1.0, 0.0, 1.0, 1.0]), 2) == pytest.approx(2 / 3)


def test_grpo_estimator_sums_token_rewards_and_broadcasts_over_the_mask():
    rewards = T([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])
    mask = T([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    out = compute_advantages("grpo", AdvantageInputs(rewards, mask, group_size=2, scale="none"))
    # Scores [1, 0 | 0, .5] -> group means .5 and .25 -> [.5, -.5 | -.25, .25] on each valid token.
    close(out.advantages, [[0.5, 0.5, 0.5], [-0.5, -0.5, 0.0], [-0.25, -0.25, -0.25], [0.25, 0.0, 0.0]])
    assert out.returns is None


# --- policy loss -------------------------------------------------------------------------------------

OLD = T([[-1.0, -1.0, -1.0, -1.0]])
NEW_SHIFT = T([[0.3, -0.3, -0.3, 0.0]])   # log ratios: r = [1.349859, .740818, .740818, 1]
ADV = T([[1.0, 1.0, -1.0, 2.0]])
ONES = torch.ones(1, 4)


def test_ppo_clip_per_token_by_hand_with_clip_higher():
    loss, clipped = ppo_clip(OLD + NEW_SHIFT, OLD, ADV, clip_low=0.2, clip_high=0.28)
    # t0: A>0, r = 1.3499 > 1.28 -> min(1.3499, 1.28) * 1 = 1.28 -> loss -1.28, clipped.
    # t1: A>0, r = .7408 < .8 -> min(.7408, .8) = .7408 -> loss -.7408, not clipped (a drop is not bounded).
    # t2: A<0, r = .7408 -> min(-.7408, -.8) = -.8 -> loss .8, clipped.
    # t3: r = 1 -> loss -2.
    close(loss, [[-1.28, -0.740818, 0.8, -2.0]])
    assert clipped.tolist() == [[True, False, True, False]]


def test_policy_loss_symmetric_vs_clip_higher_and_diagnostics():
    dapo = policy_loss("ppo_clip", OLD + NEW_SHIFT, OLD, ADV, ONES, clip_low=0.2, clip_high=0.28,
                       aggregation="token_mean")
    ppo = policy_loss("ppo_clip", OLD + NEW_SHIFT, OLD, ADV, ONES, clip_low=0.2, clip_high=0.2,
                      aggregation="token_mean")
    close(dapo.loss, (-1.28 - 0.740818 + 0.8 - 2.0) / 4)   # -0.805205
    close(ppo.loss, (-1.2 - 0.740818 + 0.8 - 2.0) / 4)     # -0.785205: t0 capped at 1.2 instead
    close(dapo.clip_fraction, 0.5)
    # k3 of KL(old || new), x = old - new = [-.3, .3, .3, 0]: e^-x + x - 1 = [.049859, .040818, .040818, 0].
    close(dapo.approx_kl, (0.049859 + 2 * 0.040818) / 4)   # 0.032874
    with pytest.raises(ValueError, match="choose one of ppo_clip"):
        policy_loss("reinforce", OLD, OLD, ADV, ONES, clip_low=0.2, clip_high=0.2, aggregation="token_mean")


def test_clipped_tokens_get_no_gradient():
    new = (OLD + NEW_SHIFT).clone().requires_grad_(True)
    policy_loss("ppo_clip", new, OLD, ADV, ONES, clip_low=0.2, clip_high=0.28, aggregation="token_mean").loss.backward()
    # d(-r A)/d logp = -r A / 4 for unclipped tokens: t1 -> -.740818 / 4 = -.185205, t3 -> -2 / 4 = -.5.
    close(new.grad, [[0.0, -0.185205, 0.0, -0.5]])


# --- aggregation -------------------------------------------------------------------------------------

PER_TOKEN = T([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
AGG_MASK = T([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])


@pytest.mark.parametrize("mode, kwargs, expected", [
    ("token_mean", {}, 2.5),                                # (1 + 2 + 3 + 4) / 4
    ("token_mean", {"num_tokens": 8}, 1.25),                # 10 / 8
    ("sequence_mean", {}, 3.0),                             # (mean(1, 2, 3) = 2 + 4) / 2
    ("sequence_mean", {"num_sequences": 4}, 1.5),           # 6 / 4
    ("sequence_sum_norm", {"max_length": 3}, 10 / 6),       # (6 + 4) / (2 sequences * 3)
    ("sequence_sum_norm", {"max_length": 10}, 0.5),         # 10 / 20: a long limit shrinks every sequence alike
])
def test_aggregation_by_hand(mode, kwargs, expected):
    close(aggregate(PER_TOKEN, AGG_MASK, mode, **kwargs), expected)


@pytest.mark.parametrize("mode", ["token_mean", "sequence_mean", "sequence_sum_norm"])
def test_micro_batches_with_global_normalisers_sum_to_the_full_batch(mode):
    full = aggregate(PER_TOKEN, AGG_MASK, mode, max_length=3)
    parts = sum(aggregate(PER_TOKEN[i:i + 1], AGG_MASK[i:i + 1], mode, max_length=3, num_tokens=AGG_MASK.sum(),
                          num_sequences=2) for i in range(2))
    close(parts, full.item())


def test_aggregation_errors():
    with pytest.raises(ValueError, match="positive max_length"):
        aggregate(PER_TOKEN, AGG_MASK, "sequence_sum_norm")
    with pytest.raises(ValueError, match="token_mean, sequence_mean, sequence_sum_norm"):
        aggregate(PER_TOKEN, AGG_MASK, "seq_mean")


# --- value loss --------------------------------------------------------------------------------------

def test_value_loss_by_hand():
    values = T([[1.0, 0.5, 0.85]]).requires_grad_(True)
    old, returns = T([[0.8, 0.8, 0.8]]), T([[1.5, 0.0, 0.0]])
    loss, clip_fraction = value_loss(values, old, returns, torch.ones(1, 3), clip=0.1)
    # t0: V_clip = .8 + .1 = .9; (1 - 1.5)^2 = .25 < (.9 - 1.5)^2 = .36 -> .5 * .36 = .18 (clipped wins)
    # t1: V_clip = .8 - .1 = .7; (.5)^2 = .25 < (.7)^2 = .49 -> .245 (clipped wins)
    # t2: within the clip: both (.85)^2 = .7225 -> .36125
    close(loss, (0.18 + 0.245 + 0.36125) / 3)   # 0.262083
    close(clip_fraction, 2 / 3)
    loss.backward()
    # Only t2 has gradient: d(.5 (V - 0)^2)/dV / 3 = .85 / 3.
    close(values.grad, [[0.0, 0.0, 0.85 / 3]])


# --- KL ----------------------------------------------------------------------------------------------

def test_kl_estimators_by_hand():
    logprobs, ref = T([-1.0, -2.0, -1.0]), T([-1.5, -1.0, -1.0])
    # x = logp - ref = [.5, -1, 0]
    close(kl_penalty(logprobs, ref, "k1"), [0.5, -1.0, 0.0])
    # k3 = e^-x + x - 1: e^-.5 - .5 = .106531 ; e^1 - 2 = .718282 ; 0
    close(kl_penalty(logprobs, ref, "k3"), [0.106531, 0.718282, 0.0])
    assert torch.isfinite(kl_penalty(T([0.0]), T([-1000.0]), "k3")).all()  # log ratio clamped at 20

    with pytest.raises(ValueError, match="choose one of k1, k3"):
        kl_penalty(logprobs, ref, "k2")


def test_k3_clamps_a_huge_log_ratio_so_one_token_cannot_dominate_the_loss():
    """A sampled token 1e13 times less likely under the policy than under the reference (x = -30): k3 and its
    gradient stay bounded (e^5 - 6 = 142.4), where the ±20 clamp alone gave 4.9e8."""
    logprobs = T([-30.0, 30.0, -4.0]).requires_grad_(True)
    penalty = kl_penalty(logprobs, T([0.0, 0.0, 0.0]), "k3")
    assert float(penalty.detach().max()) <= math.exp(5.0) - 6.0 + 1e-3
    close(penalty.detach()[2], math.exp(4.0) - 5.0)  # within the bound, k3 is exact
    penalty.sum().backward()
    assert torch.isfinite(logprobs.grad).all() and float(logprobs.grad.abs().max()) < 60.0


# --- dynamic sampling --------------------------------------------------------------------------------

def test_varied_groups():
    keep = varied_groups(T([1.0, 1.0, 0.0, 1.0, 0.0, 0.0]), group_size=2)
    assert keep.tolist() == [False, False, True, True, False, False]
    # With calibration, rewards are continuous: .0005 apart is noise below a 1e-3 tolerance.
    keep = varied_groups(T([1.0, 1.0005, 0.0, 1.0]), group_size=2, tolerance=1e-3)
    assert keep.tolist() == [False, False, True, True]
    with pytest.raises(ValueError, match="groups of 4"):
        varied_groups(T([1.0, 0.0]), group_size=4)


# --- logits ------------------------------------------------------------------------------------------

def test_token_logprobs_and_entropy_by_hand():
    logits = T([[[math.log(0.5), math.log(0.25), math.log(0.25)]]])
    close(token_logprobs(logits, T([[1]])), [[math.log(0.25)]])
    # At temperature 2 the probabilities go as sqrt: .7071, .5, .5 -> p(1) = .5 / 1.7071 = .292893.
    close(token_logprobs(logits, T([[1]]), temperature=2.0), [[math.log(0.292893)]])
    # H = -(.5 ln .5 + 2 * .25 ln .25) = .346574 + .693147 = 1.039721
    close(entropy_from_logits(logits), [[1.039721]])
    close(entropy_from_logits(torch.zeros(1, 1, 4)), [[math.log(4)]])


# --- one training step, end to end on tensors ------------------------------------------------------

def test_grpo_step_raises_the_probability_of_the_better_rollout():
    # Two rollouts of one prompt, two tokens each; the first earned reward 1, the second 0.
    logprobs = torch.full((2, 2), math.log(0.5), requires_grad=True)
    mask = torch.ones(2, 2)
    rewards = T([[0.0, 1.0], [0.0, 0.0]])
    advantages = compute_advantages("grpo", AdvantageInputs(rewards, mask, group_size=2, scale="group")).advantages
    loss = policy_loss("ppo_clip", logprobs, logprobs.detach(), advantages, mask, clip_low=0.2, clip_high=0.28,
                       aggregation="token_mean").loss
    loss.backward()
    # Advantages +-.70711 on every token; gradient -A / 4 -> descending raises row 1 and lowers row 2.
    close(logprobs.grad, [[-0.176777, -0.176777], [0.176777, 0.176777]])


@pytest.mark.parametrize("prompt_rows_per_problem", [1, 2])
def test_gather_groups_takes_the_first_kept_groups_of_each_round_in_order(prompt_rows_per_problem):
    """Two rounds of 2 problems x 2 rollouts, of different widths; groups kept: round 0 the second, round 1
    both; target 2 -> round 0's second group, then round 1's first. Prompts (one row per problem, or one per
    rollout) are left-padded, completions right-padded, problem indices renumbered."""
    from cmt.generation import Sampled
    from cmt.rewards.types import Rollout

    def round_(tag, width, prompt_width, keep):
        rows = 4
        tokens = torch.arange(rows * width).view(rows, width) + 100 * tag
        prompts = torch.full((2 * prompt_rows_per_problem, prompt_width), 10 * tag)
        rollouts = [Rollout(i // 2, f"{tag}-{i}", (1,), (0.0,), True, ((0, 1),)) for i in range(rows)]
        sampled = Sampled(tokens, -torch.ones(rows, width), torch.full((rows,), width),
                          torch.ones(rows, dtype=torch.bool))
        return SamplingRound([f"p{tag}0", f"p{tag}1"], rollouts, sampled,
                             {"input_ids": prompts, "attention_mask": torch.ones_like(prompts)}, T(keep).bool())

    rounds = [round_(1, 3, 2, [0, 0, 1, 1]), round_(2, 5, 4, [1, 1, 1, 1])]
    problems, rollouts, sampled, inputs = gather_groups(rounds, 2, 2, pad_id=0)
    assert problems == ["p11", "p20"]
    assert [(r.text, r.problem_index) for r in rollouts] == [("1-2", 0), ("1-3", 0), ("2-0", 1), ("2-1", 1)]
    assert sampled.tokens.shape == (4, 5) and sampled.tokens[0].tolist() == [106, 107, 108, 0, 0]
    assert sampled.logprobs[0].tolist() == [-1.0, -1.0, -1.0, 0.0, 0.0] and sampled.lengths.tolist() == [3, 3, 5, 5]
    rows = 2 * prompt_rows_per_problem
    assert inputs["input_ids"].shape == (rows, 4)
    assert inputs["input_ids"][0].tolist() == [0, 0, 10, 10] and inputs["attention_mask"][0].tolist() == [0, 0, 1, 1]
    assert inputs["input_ids"][-1].tolist() == [20, 20, 20, 20]
    with pytest.raises(ValueError, match="no sampling round kept a group"):
        gather_groups([round_(1, 3, 2, [0, 0, 0, 0])], 2, 2, pad_id=0)
