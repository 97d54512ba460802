"""A throwaway real Kubernetes CRD API (apiextensions-apiserver + etcd) for tests.

Why: hooks and controllers are only trustworthy when checked against the real
API semantics (status subresource, generation, finalizers, schema validation),
and no kube-apiserver can be had here. ``scripts/crdserver/build.sh`` builds the
upstream apiextensions-apiserver from package registries; this module runs it.

Usage::

    with CrdApiServer() as api:
        api.kubectl("apply", "-f", "-", input=crd_yaml)
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "crdserver" / "build.sh"

# Admission plugins that need things this server lacks (webhooks, policies,
# namespaces); left on they fail requests or spam errors.
_DISABLED_ADMISSION = (
    "NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,"
    "MutatingAdmissionPolicy,ValidatingAdmissionPolicy"
)
# Variables that could send child traffic elsewhere or point kubectl at another cluster.
_DROPPED_ENV = (
    "KUBECONFIG",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "ETCDCTL_API",
    "ETCD_DATA_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
)


class CrdServerError(RuntimeError):
    """The build or the server failed; the message carries the relevant log tail."""


class KubectlError(subprocess.CalledProcessError):
    """A failed kubectl call whose message includes kubectl's stderr (the useful part)."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


@functools.cache
def ensure_built() -> Path:
    """Build (or find cached) the crdserver binary once per process and return its path."""
    proc = subprocess.run(
        ["bash", str(BUILD_SCRIPT)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise CrdServerError(f"{BUILD_SCRIPT} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    path = Path(proc.stdout.strip().splitlines()[-1])
    if not os.access(path, os.X_OK):
        raise CrdServerError(f"{BUILD_SCRIPT} printed {path}, which is not executable")
    return path


def _free_port() -> int:
    """Ask the kernel for an unused loopback port (tiny race window; fine for tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env() -> dict[str, str]:
    """Environment for etcd/crdserver/kubectl without proxies or a foreign KUBECONFIG."""
    env = {k: v for k, v in os.environ.items() if k not in _DROPPED_ENV}
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_pki(d: Path) -> None:
    """Write a throwaway CA, a loopback server cert and an admin client cert (O=system:masters)."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt",
             "-subj", "/CN=llo-crdserver-test-ca", "-days", "2", cwd=d)  # fmt: skip
    (d / "server.ext").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subj in (("server", "/CN=localhost"), ("admin", "/O=system:masters/CN=admin")):
        ext = "server.ext" if name == "server" else "client.ext"
        _openssl("req", "-new", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", subj, cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", ext,
                 cwd=d)  # fmt: skip


class CrdApiServer:
    """etcd + crdserver on free loopback ports, with an admin kubeconfig; a context manager."""

    def __init__(self, binary: Path | None = None, start_timeout: float = 30.0) -> None:
        self.binary = binary
        self.start_timeout = start_timeout
        self.url = ""
        self._tmp: Path | None = None
        self._etcd_dir: Path | None = None
        self._procs: list[subprocess.Popen[bytes]] = []
        self._env = _child_env()

    # -- paths -----------------------------------------------------------------
    @property
    def workdir(self) -> Path:
        """Temp dir holding certs, kubeconfig, logs and kubectl's cache."""
        if self._tmp is None:
            raise CrdServerError("server not started")
        return self._tmp

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (client cert in system:masters) for this server."""
        return self.workdir / "admin.kubeconfig"

    # -- lifecycle -------------------------------------------------------------
    def __enter__(self) -> CrdApiServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Start etcd and the crdserver and wait until /livez answers ok."""
        binary = self.binary or ensure_built()
        etcd = shutil.which("etcd") or "/usr/bin/etcd"
        self._tmp = Path(tempfile.mkdtemp(prefix="llo-crdserver-"))
        # etcd fsyncs on every write; tmpfs makes that free (etcd 3.4 has no --unsafe-no-fsync).
        shm = Path("/dev/shm")
        use_shm = shm.is_dir() and os.access(shm, os.W_OK)
        self._etcd_dir = Path(tempfile.mkdtemp(prefix="llo-etcd-", dir=shm if use_shm else None))
        try:
            self._start(binary, etcd)
        except BaseException:
            self.stop()
            raise

    def _start(self, binary: Path, etcd: str) -> None:
        tmp = self.workdir
        assert self._etcd_dir is not None
        _make_pki(tmp)
        client_port, peer_port, api_port = _free_port(), _free_port(), _free_port()
        client_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        self.url = f"https://127.0.0.1:{api_port}"
        self._write_kubeconfig()
        self._spawn(
            "etcd",
            [etcd, "--name=default", f"--data-dir={self._etcd_dir}",
             f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
             f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
             f"--initial-cluster=default={peer_url}", "--logger=zap", "--log-level=warn"],
        )  # fmt: skip
        self._wait_http(f"{client_url}/health", "etcd", ssl_context=None)
        kc = str(self.kubeconfig)
        self._spawn(
            "crdserver",
            [str(binary), f"--etcd-servers={client_url}",
             "--bind-address=127.0.0.1", f"--secure-port={api_port}", f"--cert-dir={tmp}",
             f"--tls-cert-file={tmp / 'server.crt'}",
             f"--tls-private-key-file={tmp / 'server.key'}",
             f"--client-ca-file={tmp / 'ca.crt'}",
             f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}",
             f"--authorization-kubeconfig={kc}",
             # No kube-system/extension-apiserver-authentication configmap exists here.
             "--authentication-skip-lookup",
             "--enable-priority-and-fairness=false",
             f"--disable-admission-plugins={_DISABLED_ADMISSION}"],
        )  # fmt: skip
        self._wait_http(f"{self.url}/livez", "crdserver", ssl_context=self._ssl_context())

    def stop(self) -> None:
        """Stop the processes by PID (TERM, then KILL after a timeout) and remove temp dirs."""
        for proc in reversed(self._procs):  # crdserver first, then etcd
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self._procs.clear()
        for d in (self._etcd_dir, self._tmp):
            if d is not None:
                shutil.rmtree(d, ignore_errors=True)
        self._etcd_dir = self._tmp = None

    # -- clients ---------------------------------------------------------------
    def kubectl(
        self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this server; with check, a failure raises KubectlError."""
        cmd = [
            "kubectl",
            f"--kubeconfig={self.kubeconfig}",
            f"--cache-dir={self.workdir / 'kubectl-cache'}",
            *args,
        ]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            env=self._env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise KubectlError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def log_tail(self, name: str, chars: int = 3000) -> str:
        """Last part of a process log (etcd or crdserver), for failure messages."""
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace")[-chars:] if path.exists() else ""

    # -- helpers ---------------------------------------------------------------
    def _ssl_context(self) -> ssl.SSLContext:
        """Trust only the throwaway CA (so REQUESTS_CA_BUNDLE & co. play no part)."""
        ctx = ssl.create_default_context(cafile=str(self.workdir / "ca.crt"))
        ctx.load_cert_chain(str(self.workdir / "admin.crt"), str(self.workdir / "admin.key"))
        return ctx

    def _write_kubeconfig(self) -> None:
        d = self.workdir
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: crdserver
  cluster:
    server: {self.url}
    certificate-authority: {d / "ca.crt"}
users:
- name: admin
  user:
    client-certificate: {d / "admin.crt"}
    client-key: {d / "admin.key"}
contexts:
- name: crdserver
  context: {{cluster: crdserver, user: admin, namespace: default}}
current-context: crdserver
"""
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.workdir / f"{name}.log", "wb") as log:
            proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._procs.append(proc)

    def _wait_http(self, url: str, name: str, ssl_context: ssl.SSLContext | None) -> None:
        """Poll url until it answers 200 'ok'; fail early if the process dies."""
        proc = self._procs[-1]
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ssl_context)
        )
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise CrdServerError(
                    f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}"
                )
            try:
                with opener.open(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = f"HTTP {resp.status}"
            except (urllib.error.URLError, OSError) as e:
                last = str(e)
            time.sleep(0.05)
        raise CrdServerError(f"{name} not healthy at {url} ({last}):\n{self.log_tail(name)}")
