"""engine local: every site in this process. A Flower Grid whose messages go straight to the ClientApp (with its
mods) instead of through a SuperLink; Flower's strategy drives the rounds exactly as it does on a deployment. A site
that raises answers with an error reply, as a SuperNode's ClientApp does, and the round goes on with the others."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

CLIENT_APP_ERROR = 2  # flwr's ErrorCode.CLIENT_APP_RAISED_EXCEPTION


class LocalGrid(Grid):
    """Nodes FIRST_NODE + i are sites i; `app` is the ClientApp, called with each site's Context. This process is the
    server task, as Flower's ServerApp runner would have set it."""

    FIRST_NODE = 1000

    def __init__(self, app, sites: int, run_id: int, run_config: dict):
        self.app = app
        self._run = Run.create_empty(run_id)
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 0, run_id, SUPERLINK_NODE_ID
        first = self.FIRST_NODE
        self.contexts = {first + i: Context(run_id=run_id, node_id=first + i, node_config={"partition-id": i,
                                                                                    "num-partitions": sites},
                                        state=RecordDict(), run_config=run_config) for i in range(sites)}
        self._replies: dict[str, Message] = {}

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for sent in messages:
            sent.metadata.__dict__["_message_id"] = str(uuid4())
            sent.metadata.__dict__["_run_id"] = self._run.run_id
            sent.metadata.__dict__["_src_node_id"] = 0
            # the site gets a copy, as a transport delivers it: Flower may send one content object to several sites,
            # and SecAgg+'s mod consumes its config record in place
            msg = Message(copy.deepcopy(sent.content), sent.metadata.dst_node_id, sent.metadata.message_type,
                          ttl=sent.metadata.ttl, group_id=sent.metadata.group_id)
            msg.metadata.__dict__.update({k: sent.metadata.__dict__[k] for k in ("_message_id", "_run_id",
                                                                                  "_src_node_id")})
            try:
                reply = self.app(msg, self.contexts[msg.metadata.dst_node_id])
            except Exception as exc:  # noqa: BLE001 - a site's failure is its reply, not the federation's end
                reply = Message(Error(CLIENT_APP_ERROR, f"{type(exc).__name__}: {exc}"), reply_to=msg)
            reply.metadata.__dict__["_src_node_id"] = msg.metadata.dst_node_id
            self._replies[msg.metadata.message_id] = reply
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        return self.pull_messages(self.push_messages(messages))
