import os
import urllib.request

import pytest

from distill.errors import UserError
from distill.processes import free_port, python_module_command, run_server


def test_server_is_ready_inside_and_gone_after(tmp_path):
    port = free_port()
    command = python_module_command("http.server", str(port), "--bind", "127.0.0.1")
    with run_server(command, port=port, ready_path="/", log_path=tmp_path / "server.log") as server:
        with urllib.request.urlopen(server.base_url + "/", timeout=5) as response:
            assert response.status == 200
        pid = server.process.pid
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_server_that_dies_reports_its_log(tmp_path):
    command = python_module_command("this_module_does_not_exist")
    with pytest.raises(
        UserError, match="(?s)exited with code 1 before answering.*this_module_does_not_exist"
    ):
        with run_server(command, port=free_port(), log_path=tmp_path / "dead.log", name="dead"):
            pass
