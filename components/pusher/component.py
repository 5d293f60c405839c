"""AtomicPusher: TFX's Pusher with an atomic, de-duplicated file-system push (see serving.py).

    pusher = AtomicPusher(model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
                          push_destination=tfx.proto.PushDestination(
                              filesystem=tfx.proto.PushDestination.Filesystem(base_directory=base_dir)))

Same inputs, outputs and PushedModel properties as tfx.components.Pusher; when the model equals the latest
served version, pushed=0 and `push_skipped_reason` says why.
"""
from tfx.components.pusher import component as tfx_pusher_component
from tfx.dsl.components.base import executor_spec

from hubtfx.components.pusher import executor


class AtomicPusher(tfx_pusher_component.Pusher):
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)
