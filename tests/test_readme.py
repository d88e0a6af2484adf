"""README.md and README.zh-CN.md show the same commands and the same YAML module names (they are kept in step)."""
import re

from conftest import PROJECT

EN, ZH = (PROJECT / 'README.md').read_text(), (PROJECT / 'README.zh-CN.md').read_text()


def make_commands(text):
    """The `make ...` lines of a README's code blocks, without their comments."""
    blocks = re.findall(r'```bash\n(.*?)```', text, re.S)
    return {line.split('#')[0].strip() for block in blocks for line in block.splitlines()
            if line.strip().startswith('make ')}


def table_names(text, header):
    """The `names` in the first column of the table whose header row starts with header."""
    table = text.split(header, 1)[1].split('\n\n', 1)[0]
    return {n for row in table.splitlines()[2:] for n in re.findall(r'`([^`]+)`', row.split('|')[1])}


def test_both_readmes_show_the_same_commands():
    en, zh = make_commands(EN), make_commands(ZH)
    assert {'make train', 'make test', 'make data SRC=path/to/dataset NAME=mine'} <= zh
    assert zh <= en, f'commands only in README.zh-CN.md: {sorted(zh - en)}'
    first_sections = EN.split('## Choosing modules and losses')[0]  # the two commands, fine-tuning, your own data
    assert make_commands(first_sections) <= zh, f'missing in README.zh-CN.md: {sorted(make_commands(first_sections) - zh)}'


def test_both_readmes_list_the_same_yaml_module_names():
    en, zh = table_names(EN, '| YAML names |'), table_names(ZH, '| YAML 名字 |')
    assert len(en) > 50 and en == zh, (sorted(en - zh), sorted(zh - en))
