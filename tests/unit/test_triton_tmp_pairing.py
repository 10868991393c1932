"""Which python_env_ dir a Triton server made, told from creation times alone (decision 184).

`paired_env` gets /tmp's folderXXXXXX and python_env_XXXXXX dirs as name -> ctime (ns); the timelines here
are the ones servers starting side by side make (an env 0.3-31 ms after its folder, measured)."""

from __future__ import annotations

import pytest

from canary.sandbox.tritonserver import ENV_WINDOW_NS, _mkdtemp_name, paired_env

MS = 1_000_000
T0 = 1_700_000_000_000 * MS  # any time: only differences count


def at(**ms: float) -> dict[str, int]:
    return {name: T0 + int(t * MS) for name, t in ms.items()}


def test_a_lone_server_gets_the_env_made_after_its_folder() -> None:
    assert paired_env("folderAAAAAA", at(folderAAAAAA=0), at(python_env_aaaaaa=5)) == "python_env_aaaaaa"


def test_two_servers_a_tenth_of_a_second_apart_each_get_their_own() -> None:
    folders, envs = at(folderAAAAAA=0, folderBBBBBB=100), at(python_env_aaaaaa=5, python_env_bbbbbb=131)
    assert paired_env("folderAAAAAA", folders, envs) == "python_env_aaaaaa"
    assert paired_env("folderBBBBBB", folders, envs) == "python_env_bbbbbb"


def test_a_server_most_of_a_second_before_ours_whose_env_came_late_still_lets_ours_get_its_own() -> None:
    """Seen with the sandbox's two arms: the other folder 922 ms before ours, its env 72 ms after it. Read
    without that env, the other folder still waited when ours came, and neither got one."""
    folders, envs = at(folderAAAAAA=0, folderBBBBBB=-921.6), at(python_env_aaaaaa=2.4, python_env_bbbbbb=-849.6)
    assert paired_env("folderAAAAAA", folders, envs) == "python_env_aaaaaa"
    assert paired_env("folderBBBBBB", folders, envs) == "python_env_bbbbbb"


def test_two_folders_before_either_env_give_neither_server_an_env() -> None:
    """folder A, folder B, env, env: which env is whose cannot be told (seen: folders 15.7 ms apart)."""
    folders, envs = at(folderAAAAAA=0, folderBBBBBB=15.7), at(python_env_aaaaaa=17.9, python_env_bbbbbb=17.8)
    assert paired_env("folderAAAAAA", folders, envs) is None
    assert paired_env("folderBBBBBB", folders, envs) is None


def test_an_env_whose_folder_is_gone_made_after_ours_makes_ours_unsure() -> None:
    """Another server's folder (removed by its clean stop) came just before ours and its env just after:
    the first env after our folder is not ours, and the env that went to no folder says so."""
    assert paired_env("folderAAAAAA", at(folderAAAAAA=0), at(python_env_xxxxxx=2, python_env_aaaaaa=5)) is None


def test_a_folder_and_an_env_of_one_clock_tick_are_read_folder_first() -> None:
    assert paired_env("folderAAAAAA", at(folderAAAAAA=8), at(python_env_aaaaaa=8)) == "python_env_aaaaaa"


def test_envs_before_our_folder_and_outside_the_window_are_not_ours() -> None:
    folders = at(folderAAAAAA=0, folderOLDOLD=-300)
    envs = at(python_env_oldold=-296, python_env_stale0=-200, python_env_late00=ENV_WINDOW_NS / MS + 1)
    assert paired_env("folderAAAAAA", folders, envs) is None  # nothing within the window after it
    assert paired_env("folderAAAAAA", folders, {**envs, **at(python_env_aaaaaa=3)}) == "python_env_aaaaaa"


def test_a_server_after_ours_does_not_change_what_ours_gets() -> None:
    folders = at(folderAAAAAA=0, folderBBBBBB=1, folderCCCCCC=200)
    envs = at(python_env_aaaaaa=0.5, python_env_bbbbbb=3, python_env_cccccc=204)
    assert [paired_env(f, folders, envs) for f in folders] == ["python_env_aaaaaa", "python_env_bbbbbb",
                                                               "python_env_cccccc"]


@pytest.mark.parametrize(("name", "prefix", "ok"), [
    ("folderDmcavG", "folder", True), ("python_env_zCQ2o5", "python_env_", True),
    ("folderDmcav", "folder", False), ("folderDmcavG1", "folder", False), ("folder-mcavG", "folder", False),
    ("folders", "folder", False), ("python_env_", "python_env_", False),
])
def test_only_what_mkdtemp_makes_of_the_template_is_taken_for_triton_s(name: str, prefix: str, ok: bool) -> None:
    assert _mkdtemp_name(name, prefix) is ok
