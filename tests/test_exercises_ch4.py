"""Chapter 4's checks: each reference solution passes; a typical wrong answer fails, in both languages."""

import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMPipeline

from course_utils.exercises import TODO
from course_utils.exercises.chapter4 import check_ddim_pipeline, check_round_trip, check_sampling_loop


def stub(*args):
    raise NotImplementedError(TODO)


def sample(unet, scheduler, n, steps, generator):
    scheduler.set_timesteps(steps)
    size = unet.config.sample_size
    x = torch.randn((n, unet.config.in_channels, size, size), generator=generator)
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x, generator=generator).prev_sample
    return x.clamp(-1, 1)


def round_trip(pipeline, folder):
    pipeline.save_pretrained(folder)
    return DDPMPipeline.from_pretrained(folder, use_safetensors=True)


def to_ddim(pipeline):
    return DDIMPipeline(unet=pipeline.unet, scheduler=DDIMScheduler.from_config(pipeline.scheduler.config))


def test_the_reference_solutions_pass():
    assert check_sampling_loop(sample) and check_round_trip(round_trip) and check_ddim_pipeline(to_ddim)


def test_untouched_stubs_are_not_done():
    for check in (check_sampling_loop, check_round_trip, check_ddim_pipeline):
        assert check(stub).status == "not done"


def test_a_loop_without_the_generator_in_each_step_fails():
    def no_generator(unet, scheduler, n, steps, generator):
        scheduler.set_timesteps(steps)
        x = torch.randn((n, 3, 16, 16), generator=generator)
        for t in scheduler.timesteps:
            x = scheduler.step(unet(x, t).sample, t, x).prev_sample
        return x

    verdict = check_sampling_loop(no_generator)
    assert not verdict and "generator" in verdict.en and "generator" in verdict.zh and "同一种子" in verdict.zh


def test_returning_the_same_object_or_saving_nothing_fails(tmp_path):
    verdict = check_round_trip(lambda pipeline, folder: pipeline)
    assert not verdict and "model_index.json" in verdict.en and "没有写出" in verdict.zh

    def same(pipeline, folder):
        pipeline.save_pretrained(folder)
        return pipeline

    verdict = check_round_trip(same)
    assert not verdict and "from_pretrained" in verdict.en and "读回" in verdict.zh


def test_a_default_ddim_scheduler_has_the_wrong_noise_schedule():
    verdict = check_ddim_pipeline(lambda pipeline: DDIMPipeline(unet=pipeline.unet, scheduler=DDIMScheduler()))
    assert not verdict and "from_config" in verdict.en and "线性" in verdict.zh
    verdict = check_ddim_pipeline(lambda pipeline: pipeline)
    assert not verdict and "DDIMPipeline" in verdict.en


def test_a_ddim_pipeline_must_draw_the_chapters_ddim_images_at_eta_0():
    def trailing(pipeline):  # right schedule and target, other timesteps: not the chapter's DDIM
        return DDIMPipeline(unet=pipeline.unet, scheduler=DDIMScheduler.from_config(pipeline.scheduler.config,
                                                                                    timestep_spacing="trailing"))

    verdict = check_ddim_pipeline(trailing)
    assert not verdict and "eta=0" in verdict.en and "eta=0" in verdict.zh
    verdict = check_ddim_pipeline(to_ddim)
    assert verdict and "eta = 1" in verdict.en and "eta = 1" in verdict.zh


def test_a_ddim_scheduler_that_forgets_the_v_target_is_caught():
    verdict = check_ddim_pipeline(lambda pipeline: DDIMPipeline(
        unet=pipeline.unet, scheduler=DDIMScheduler(beta_schedule="squaredcos_cap_v2")))  # epsilon by default
    assert not verdict and "v_prediction" in verdict.en
