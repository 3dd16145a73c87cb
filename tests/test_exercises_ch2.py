"""Chapter 2's exercise checks, each against diffusers' DDPMScheduler: every reference solution passes; a typical
wrong answer fails with the intended message in both languages; an untouched stub is "not done"."""


from course_utils.exercises import TODO
from course_utils.exercises.chapter2 import check_add_noise, check_halfway, check_velocity, check_x0_from_eps


def stub(*args):
    raise NotImplementedError(TODO)


def wrong_in(verdict, en: str, zh: str) -> bool:
    return verdict.status == "wrong" and en in verdict.en and zh in verdict.zh


def coefficients(t, alphas_cumprod):
    abar = alphas_cumprod[t].view(-1, 1, 1, 1)
    return abar.sqrt(), (1 - abar).sqrt()


def add_noise(x0, noise, t, alphas_cumprod):
    a, b = coefficients(t, alphas_cumprod)
    return a * x0 + b * noise


def velocity(x0, noise, t, alphas_cumprod):
    a, b = coefficients(t, alphas_cumprod)
    return a * noise - b * x0


def x0_from_eps(x_t, eps, t, alphas_cumprod):
    a, b = coefficients(t, alphas_cumprod)
    return (x_t - b * eps) / a


def test_solutions_are_right():
    assert check_add_noise(add_noise).status == "right"
    assert check_velocity(velocity).status == "right"
    assert check_x0_from_eps(x0_from_eps).status == "right"
    from diffusers import DDPMScheduler

    abar = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    verdict = check_halfway(int((abar < 0.5).nonzero()[0]))
    assert verdict.status == "right" and "linear one gets there" in verdict.en and "线性调度" in verdict.zh


def test_add_noise_mistakes_are_named():
    def no_roots(x0, noise, t, abar):
        a = abar[t].view(-1, 1, 1, 1)
        return a * x0 + (1 - a) * noise

    assert wrong_in(check_add_noise(no_roots), "square roots", "平方根")
    assert wrong_in(check_add_noise(lambda x0, n, t, abar: add_noise(n, x0, t, abar)), "swapped", "写反了")
    assert wrong_in(check_add_noise(lambda x0, n, t, abar: abar[t].sqrt() * x0 + (1 - abar[t]).sqrt() * n),
                    ".view(-1, 1, 1, 1)", ".view(-1, 1, 1, 1)")
    assert wrong_in(check_add_noise(lambda x0, n, t, abar: add_noise(x0, n, (t - 1).clamp(min=0), abar)),
                    "differs from DDPMScheduler.add_noise", "最多相差")
    assert check_add_noise(stub).status == "not done"


def test_velocity_mistakes_are_named():
    assert wrong_in(check_velocity(lambda x0, n, t, abar: -velocity(x0, n, t, abar)), "opposite sign", "符号相反")
    assert wrong_in(check_velocity(lambda x0, n, t, abar: n - x0), "flow matching", "流匹配")

    def swapped(x0, noise, t, abar):
        a, b = coefficients(t, abar)
        return b * noise - a * x0

    assert wrong_in(check_velocity(swapped), "swapped", "写反了")
    assert check_velocity(stub).status == "not done"


def test_halfway_mistakes_are_named():
    from diffusers import DDPMScheduler

    cosine = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod
    answer = int((cosine < 0.5).nonzero()[0])
    assert wrong_in(check_halfway(answer - 1), "still at or above", "仍不低于")
    assert wrong_in(check_halfway(int((cosine.sqrt() < 0.5).nonzero()[0])), "√ᾱ_t", "√ᾱ_t")
    linear = DDPMScheduler().alphas_cumprod
    assert wrong_in(check_halfway(int((linear < 0.5).nonzero()[0])), "linear", "线性")
    assert wrong_in(check_halfway(1000), "not a timestep", "不是时间步")
    assert wrong_in(check_halfway("half"), "whole number", "整数")
    assert check_halfway(None).status == "not done"


def test_x0_from_eps_mistakes_are_named():
    def undivided(x_t, eps, t, abar):
        return x_t - coefficients(t, abar)[1] * eps

    assert wrong_in(check_x0_from_eps(undivided), "divide by √ᾱ_t", "除以 √ᾱ_t")

    def no_roots(x_t, eps, t, abar):
        a = abar[t].view(-1, 1, 1, 1)
        return (x_t - (1 - a) * eps) / a

    assert wrong_in(check_x0_from_eps(no_roots), "square roots", "平方根")
    assert check_x0_from_eps(stub).status == "not done"
