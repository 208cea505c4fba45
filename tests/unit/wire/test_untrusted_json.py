#    Licensed under the Apache License, Version 2.0 (the "License"); you may
#    not use this file except in compliance with the License. You may obtain
#    a copy of the License at
#
#         http://www.apache.org/licenses/LICENSE-2.0
#
#    Unless required by applicable law or agreed to in writing, software
#    distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
#    WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
#    License for the specific language governing permissions and limitations
#    under the License.


"""Bounded JSON parsing of what peers send."""

import json

import pytest

from df_nats.wire import untrusted_json


def test_ordinary_documents_parse():
    body = json.dumps({'a': [1, {'b': '[[[{{{'}], 'c': 'x\\"]]'}).encode()
    assert untrusted_json.loads(body, 1000) == (
        {'a': [1, {'b': '[[[{{{'}], 'c': 'x\\"]]'}, None)


@pytest.mark.parametrize('depth', [33, 1000, 200000])
def test_too_deep_is_refused_before_parsing(depth):
    body = b'[' * depth + b']' * depth
    assert untrusted_json.loads(body, 10 ** 7) == (None, 'too deep')
    body = b'{"a":' * depth + b'1' + b'}' * depth
    assert untrusted_json.loads(body, 10 ** 7) == (None, 'too deep')


def test_brackets_in_strings_do_not_count():
    body = json.dumps(['[' * 5000, '{' * 5000]).encode()
    assert untrusted_json.loads(body, 10 ** 6)[1] is None


def test_the_depth_bound_is_exact():
    assert untrusted_json.loads(b'[' * 4 + b']' * 4, 100, max_depth=4)[1] \
        is None
    assert untrusted_json.loads(b'[' * 5 + b']' * 5, 100, max_depth=4) == (
        None, 'too deep')


@pytest.mark.parametrize('body, problem', [
    (b'x' * 101, 'too large'), (b'{"a": ', 'not JSON'), (b'\xff', 'not JSON'),
    (b'1' * 5000, 'not JSON'), (None, 'not JSON'), (7, 'not JSON')])
def test_whatever_else_is_a_problem_never_an_exception(body, problem):
    assert untrusted_json.loads(body, 100 if problem == 'too large'
                                else 10000) == (None, problem)
