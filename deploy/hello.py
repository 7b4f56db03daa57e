"""The DAG the deployment steps of docs/deploy.md use to check an installation works.

A message published to `local://hello` becomes a run whose one task returns it.
Remove it from the DAGs folder once the check has passed.
"""

from herald import Asset, AssetWatcher, MessageQueueTrigger, dag, task

hello = Asset("hello", watchers=[AssetWatcher("hello_local", MessageQueueTrigger("local://hello"))])


@dag(schedule=[hello])
def deployment_check():
    @task
    def answer(triggering_asset_events):
        return triggering_asset_events[hello][0].extra["payload"]

    answer()


deployment_check()
