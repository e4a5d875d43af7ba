"""The emulator's API semantics, exercised over HTTP through the official client."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import kubernetes.client
import kubernetes.config
import kubernetes.watch
import pytest
from kubernetes.client import ApiException
from kubernetes.leaderelection import electionconfig, leaderelection
from kubernetes.leaderelection.leaderelectionrecord import LeaderElectionRecord
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

from canaryctl_demo.kube import emulator, seed
from controller.experiment import crd, spec

CRD = crd.build_crd()
GROUP, VERSION, PLURAL = spec.API_GROUP, spec.API_VERSION, spec.PLURAL


def experiment(name: str = "exp-a", **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": spec.KIND,
        "metadata": {"name": name, **extra},
        "spec": {"steps": [5, 25, 50]},
    }


@pytest.fixture()
def custom(
    served: emulator.Served, api: kubernetes.client.ApiClient
) -> kubernetes.client.CustomObjectsApi:
    served.emulator.load_crd(CRD)
    return kubernetes.client.CustomObjectsApi(api)


def test_create_answers_201(served: emulator.Served, api: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(api)
    created = apps.create_namespaced_deployment("ml", seed.deployment("ranker-v1"))
    assert created is not None and created.metadata is not None
    assert (created.metadata.namespace, created.metadata.generation) == ("ml", 1)
    assert created.metadata.resource_version and created.metadata.uid
    assert [(r.method, r.status) for r in served.emulator.log] == [("POST", 201)]
    with pytest.raises(ApiException) as exc:
        apps.create_namespaced_deployment("ml", seed.deployment("ranker-v1"))
    assert (exc.value.status, json.loads(exc.value.body)["reason"]) == (409, "AlreadyExists")


def test_missing_object_is_a_404_status(api: kubernetes.client.ApiClient) -> None:
    with pytest.raises(ApiException) as exc:
        kubernetes.client.AppsV1Api(api).read_namespaced_deployment("nope", "ml")
    body = json.loads(exc.value.body)
    assert exc.value.status == 404
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "NotFound", 404)
    assert body["details"]["name"] == "nope"


def test_put_with_stale_resource_version_is_409(api: kubernetes.client.ApiClient) -> None:
    leases = kubernetes.client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(
        "ml",
        kubernetes.client.V1Lease(
            metadata=kubernetes.client.V1ObjectMeta(name="canaryctl"),
            spec=kubernetes.client.V1LeaseSpec(holder_identity="a"),
        ),
    )
    stale = leases.read_namespaced_lease("canaryctl", "ml")
    assert lease.spec is not None
    lease.spec.holder_identity = "b"
    renewed = leases.replace_namespaced_lease("canaryctl", "ml", lease)
    assert renewed.spec is not None and renewed.spec.holder_identity == "b"
    assert stale.spec is not None
    stale.spec.holder_identity = "c"
    with pytest.raises(ApiException) as exc:
        leases.replace_namespaced_lease("canaryctl", "ml", stale)
    assert (exc.value.status, json.loads(exc.value.body)["reason"]) == (409, "Conflict")


def test_leader_election_lease_lock(served: emulator.Served) -> None:
    """kubernetes.leaderelection's LeaseLock (it uses the default client configuration)."""
    kubernetes.client.Configuration.set_default(served.api_client().configuration)
    try:
        record = LeaderElectionRecord(
            "pod-a", "15", "2026-01-01 00:00:00+00:00", "2026-01-01 00:00:00+00:00"
        )
        lock_a = LeaseLock("canaryctl", "ml", "pod-a")
        lock_b = LeaseLock("canaryctl", "ml", "pod-b")
        assert lock_a.get("canaryctl", "ml")[0] is False
        assert lock_a.create("canaryctl", "ml", record)
        assert lock_b.get("canaryctl", "ml")[1].holder_identity == "pod-a"  # b reads now
        for renew in ("2026-01-01 00:00:05+00:00", "2026-01-01 00:00:10+00:00"):
            record.renew_time = renew  # the election loop: get, then update (a PUT)
            assert lock_a.get("canaryctl", "ml")[0]
            assert lock_a.update("canaryctl", "ml", record)
        takeover = LeaderElectionRecord("pod-b", "15", record.renew_time, record.renew_time)
        assert not lock_b.update("canaryctl", "ml", takeover)  # b's read is stale: 409
        assert lock_a.get("canaryctl", "ml")[1].holder_identity == "pod-a"
    finally:
        kubernetes.client.Configuration.set_default(None)
    puts = [r.status for r in served.emulator.log if r.method == "PUT"]
    assert puts == [200, 200, 409]


def test_status_subresource_isolation(custom: kubernetes.client.CustomObjectsApi) -> None:
    args = (GROUP, VERSION, "ml", PLURAL, "exp-a")
    created = custom.create_namespaced_custom_object(
        *args[:4], experiment() | {"status": {"phase": "Bogus"}}
    )
    assert "status" not in created  # create ignores status
    patched = custom.patch_namespaced_custom_object(
        *args, {"spec": {"steps": [10]}, "status": {"phase": "Ignored"}}
    )
    assert "status" not in patched and patched["metadata"]["generation"] == 2
    status = custom.patch_namespaced_custom_object_status(
        *args, {"spec": {"steps": [99]}, "status": {"phase": "Running"}}
    )
    assert status["status"] == {"phase": "Running"} and status["spec"] == {"steps": [10]}
    assert status["metadata"]["generation"] == 2  # status writes do not bump generation
    replaced = custom.replace_namespaced_custom_object_status(
        *args, {**status, "status": {"phase": "Done"}}
    )
    assert replaced["status"] == {"phase": "Done"}
    annotated = custom.patch_namespaced_custom_object(*args, {"metadata": {"labels": {"a": "b"}}})
    assert annotated["metadata"]["generation"] == 2  # metadata changes do not bump it either
    assert annotated["status"] == {"phase": "Done"}


def test_list_has_kind_version_and_selects_labels(
    custom: kubernetes.client.CustomObjectsApi,
) -> None:
    for name, team in (("exp-a", "search"), ("exp-b", "feed")):
        custom.create_namespaced_custom_object(
            GROUP,
            VERSION,
            "ml",
            PLURAL,
            experiment(name, labels={"team": team}),
        )
    listed = custom.list_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL)
    assert (listed["apiVersion"], listed["kind"]) == (f"{GROUP}/{VERSION}", f"{spec.KIND}List")
    newest = listed["items"][-1]["metadata"]["resourceVersion"]
    assert listed["metadata"]["resourceVersion"] == newest
    assert [i["kind"] for i in listed["items"]] == [spec.KIND, spec.KIND]
    feed = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, label_selector="team=feed")
    assert [i["metadata"]["name"] for i in feed["items"]] == ["exp-b"]
    others = custom.list_namespaced_custom_object(
        GROUP, VERSION, "other", PLURAL, label_selector="team!=feed"
    )
    assert others["items"] == []


def test_finalizers_delay_deletion(custom: kubernetes.client.CustomObjectsApi) -> None:
    args = (GROUP, VERSION, "ml", PLURAL, "exp-a")
    custom.create_namespaced_custom_object(*args[:4], experiment(finalizers=[f"{GROUP}/rollback"]))
    custom.delete_namespaced_custom_object(*args)
    marked = custom.get_namespaced_custom_object(*args)
    assert marked["metadata"]["deletionTimestamp"]
    custom.delete_namespaced_custom_object(*args)  # deleting again changes nothing
    assert custom.get_namespaced_custom_object(*args)["metadata"] == marked["metadata"]
    custom.patch_namespaced_custom_object(*args, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        custom.get_namespaced_custom_object(*args)
    assert exc.value.status == 404


def test_patch_flavours(
    custom: kubernetes.client.CustomObjectsApi, served: emulator.Served
) -> None:
    args = (GROUP, VERSION, "ml", PLURAL, "exp-a")
    custom.create_namespaced_custom_object(*args[:4], experiment(annotations={"a": "1"}))
    merged = custom.patch_namespaced_custom_object(
        *args, {"metadata": {"annotations": {"a": None, "b": "2"}}}
    )
    assert merged["metadata"]["annotations"] == {"b": "2"}
    json_patched = custom.patch_namespaced_custom_object(
        *args,
        [{"op": "replace", "path": "/spec/steps", "value": [1]}],
        _content_type="application/json-patch+json",
    )
    assert json_patched["spec"]["steps"] == [1]
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            *args, {"metadata": {"resourceVersion": "1"}, "spec": {"steps": [2]}}
        )
    assert exc.value.status == 409
    writes = served.emulator.writes("/experiments/exp-a")
    assert writes[0].body == {"metadata": {"annotations": {"a": None, "b": "2"}}}
    assert len(writes) == 2  # the 409 is logged but is not a successful write


def test_crd_created_through_the_api_is_served(api: kubernetes.client.ApiClient) -> None:
    kubernetes.client.ApiextensionsV1Api(api).create_custom_resource_definition(CRD)
    custom = kubernetes.client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, experiment())
    groups = kubernetes.client.ApisApi(api).get_api_versions()
    assert GROUP in [g.name for g in groups.groups]


def test_watch_streams_changes(custom: kubernetes.client.CustomObjectsApi) -> None:
    for name in ("exp-a", "exp-b"):
        custom.create_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, experiment(name))
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(
        custom.list_namespaced_custom_object,
        GROUP,
        VERSION,
        "ml",
        PLURAL,
        timeout_seconds=5,
    ):
        events.append((event["type"], event["object"]["metadata"]["name"]))
        if len(events) == 2:
            custom.delete_namespaced_custom_object(GROUP, VERSION, "ml", PLURAL, "exp-a")
        if len(events) == 3:
            watch.stop()
    assert events == [("ADDED", "exp-a"), ("ADDED", "exp-b"), ("DELETED", "exp-a")]


def test_watch_from_a_resource_version_replays_later_events(
    custom: kubernetes.client.CustomObjectsApi,
) -> None:
    args = (GROUP, VERSION, "ml", PLURAL)
    custom.create_namespaced_custom_object(*args, experiment("exp-a"))
    since = custom.list_namespaced_custom_object(*args)["metadata"]["resourceVersion"]
    custom.create_namespaced_custom_object(*args, experiment("exp-b"))
    custom.patch_namespaced_custom_object(*args, "exp-a", {"spec": {"steps": [1]}})
    watch = kubernetes.watch.Watch()
    events = []
    for event in watch.stream(
        custom.list_namespaced_custom_object, *args, resource_version=since, timeout_seconds=5
    ):
        events.append((event["type"], event["object"]["metadata"]["name"]))
        if len(events) == 2:
            watch.stop()
    assert events == [("ADDED", "exp-b"), ("MODIFIED", "exp-a")]


def test_kubeconfig_loads_into_the_official_client(served: emulator.Served) -> None:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config_from_dict(
        served.kubeconfig("ml"), client_configuration=configuration
    )
    with kubernetes.client.ApiClient(configuration) as client:
        namespaces = kubernetes.client.CoreV1Api(client).list_namespace()
    assert namespaces.items == []


def test_unknown_resources_are_404_and_logged(
    served: emulator.Served, api: kubernetes.client.ApiClient
) -> None:
    with pytest.raises(ApiException) as exc:
        kubernetes.client.CustomObjectsApi(api).list_namespaced_custom_object(
            "example.com", "v1", "ml", "widgets"
        )
    assert exc.value.status == 404
    assert [(r.method, r.status) for r in served.emulator.log] == [("GET", 404)]


def test_typed_patches_are_strategic_merges(api: kubernetes.client.ApiClient) -> None:
    apps = kubernetes.client.AppsV1Api(api)
    body = seed.deployment("ranker-v1")
    body["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s:1"})
    apps.create_namespaced_deployment("ml", body)
    patched = apps.patch_namespaced_deployment(
        "ranker-v1",
        "ml",
        {"spec": {"template": {"spec": {"containers": [{"name": "model", "image": "model:2"}]}}}},
    )
    assert patched.spec is not None and patched.spec.template.spec is not None
    containers = patched.spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("model", "model:2"), ("sidecar", "s:1")]


def test_strategic_merge_on_a_custom_resource_is_415(
    custom: kubernetes.client.CustomObjectsApi,
) -> None:
    args = (GROUP, VERSION, "ml", PLURAL)
    custom.create_namespaced_custom_object(*args, experiment())
    with pytest.raises(ApiException) as exc:
        custom.patch_namespaced_custom_object(
            *args,
            "exp-a",
            {"spec": {"steps": [1]}},
            _content_type="application/strategic-merge-patch+json",
        )
    assert exc.value.status == 415


async def test_served_in_the_running_loop_with_kmock_server() -> None:
    import kmock

    async with emulator.Emulator() as kube, kmock.Server(kube):
        response = await kube.post(
            "/apis/apps/v1/namespaces/ml/deployments", json=seed.deployment("ranker-v1")
        )
        assert response.status == 201
        response = await kube.get("/apis/apps/v1/deployments")
        listed = await response.json()
    assert (listed["kind"], [i["metadata"]["name"] for i in listed["items"]]) == (
        "DeploymentList",
        ["ranker-v1"],
    )


def test_leader_election_acquires_and_renews(served: emulator.Served) -> None:
    """The client's own election loop: create the Lease, renew it with PUT, then stop leading."""

    def renewed() -> bool:
        return any(r.method == "PUT" and r.status == 200 for r in served.emulator.log)

    def lead() -> None:
        deadline = time.monotonic() + 20  # a bound on waiting, not a timing assertion
        while not renewed() and time.monotonic() < deadline:
            time.sleep(0.02)
        raise RuntimeError("done leading")  # makes the elector stop renewing and return

    stopped = threading.Event()
    kubernetes.client.Configuration.set_default(served.api_client().configuration)
    try:
        config = electionconfig.Config(
            LeaseLock("canaryctl", "ml", "pod-a"),
            lease_duration=3,
            renew_deadline=2,
            retry_period=1,
            onstarted_leading=lead,
            onstopped_leading=stopped.set,
        )
        elector = threading.Thread(target=leaderelection.LeaderElection(config).run, daemon=True)
        elector.start()
        elector.join(timeout=30)
    finally:
        kubernetes.client.Configuration.set_default(None)
    assert stopped.is_set()
    assert [(r.method, r.status) for r in served.emulator.log if r.is_write][:2] == [
        ("POST", 201),
        ("PUT", 200),
    ]


def test_deployment_scale_subresource(api: kubernetes.client.ApiClient) -> None:
    """GET/PATCH/PUT ``deployments/{name}/scale`` as the API server serves them."""
    apps = kubernetes.client.AppsV1Api(api)
    kubernetes.client.CoreV1Api(api).create_namespace({"metadata": {"name": "ml"}})
    seed.Cluster(api, "ml").create_deployment("ranker-v1", replicas=3)
    scale = apps.read_namespaced_deployment_scale("ranker-v1", "ml")
    assert (scale.kind, scale.spec.replicas, scale.status.selector) == ("Scale", 3, "app=ranker-v1")
    before = apps.read_namespaced_deployment("ranker-v1", "ml")
    # a patch reaches spec.replicas only: annotations and the pod template are out of reach
    apps.patch_namespaced_deployment_scale(
        "ranker-v1",
        "ml",
        {"metadata": {"annotations": {"x": "y"}}, "spec": {"replicas": 5}},
    )
    after = apps.read_namespaced_deployment("ranker-v1", "ml")
    assert after.spec.replicas == 5 and not (after.metadata.annotations or {}).get("x")
    assert after.spec.template == before.spec.template
    # a stale resourceVersion is a conflict; PUT works like PATCH
    stale = {
        "metadata": {"resourceVersion": before.metadata.resource_version},
        "spec": {"replicas": 1},
    }
    with pytest.raises(ApiException) as caught:
        apps.patch_namespaced_deployment_scale("ranker-v1", "ml", stale)
    assert caught.value.status == 409
    current = apps.read_namespaced_deployment_scale("ranker-v1", "ml")
    current.spec.replicas = 2
    assert apps.replace_namespaced_deployment_scale("ranker-v1", "ml", current).spec.replicas == 2
    with pytest.raises(ApiException) as missing:
        apps.read_namespaced_deployment_scale("nope", "ml")
    assert missing.value.status == 404
