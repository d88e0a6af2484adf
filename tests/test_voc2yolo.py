"""scripts/voc2yolo.py (now a wrapper over scripts/make_dataset.py) on BCCD and on a deliberately messy VOC folder."""
from pathlib import Path

import pytest
from conftest import PROJECT

import voc2yolo

BCCD = PROJECT.parent / 'shared' / 'datasets' / 'BCCD'
NAMES = ['RBC', 'WBC', 'Platelets']


def read_labels(folder: Path):
    rows = []
    for f in sorted(folder.glob('*.txt')):
        rows += [line.split() for line in f.read_text().splitlines()]
    return rows


def assert_valid_labels(folder: Path, nc: int):
    for cls, *xywh in read_labels(folder):
        x, y, w, h = map(float, xywh)
        assert 0 <= int(cls) < nc
        assert w > 0 and h > 0
        assert 0 <= x - w / 2 + 1e-6 and x + w / 2 <= 1 + 1e-6 and 0 <= y - h / 2 + 1e-6 and y + h / 2 <= 1 + 1e-6


@pytest.mark.skipif(not BCCD.exists(), reason='needs ../shared/datasets/BCCD')
def test_bccd_counts_per_split_and_class(tmp_path):
    stats = voc2yolo.convert(BCCD, tmp_path, NAMES)
    assert dict(stats.images) == {'train': 205, 'val': 87, 'test': 72}  # the dataset's ImageSets
    assert {s: dict(c) for s, c in stats.boxes.items()} == {
        'train': {'RBC': 2381, 'WBC': 214, 'Platelets': 209},
        'val': {'RBC': 967, 'WBC': 87, 'Platelets': 83},
        'test': {'RBC': 805, 'WBC': 71, 'Platelets': 69}}
    # SOURCE.md: 4155 RBC boxes, two of them zero-size points: skipped with a warning naming the file
    assert stats.skipped == {'degenerate box': 2}
    # warnings name the file by its path in the source (Annotations/...), which for BCCD ends with its name
    files = sorted(Path(w.split(':')[0]).name for w in stats.warnings)
    assert files == ['BloodImage_00338.xml', 'BloodImage_00343.xml']
    for split in voc2yolo.SPLITS:
        assert len(list((tmp_path / 'images' / split).glob('*.jpg'))) == stats.images[split]
        assert_valid_labels(tmp_path / 'labels' / split, 3)
        assert len(read_labels(tmp_path / 'labels' / split)) == sum(stats.boxes[split].values())


def _voc(root: Path, stem: str, objects, size=(100, 50)):
    from PIL import Image
    (root / 'Annotations').mkdir(parents=True, exist_ok=True)
    (root / 'JPEGImages').mkdir(exist_ok=True)
    Image.new('RGB', size).save(root / 'JPEGImages' / f'{stem}.jpg')
    objs = ''.join(f'<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>'
                   f'<ymax>{b[3]}</ymax></bndbox></object>' for n, b in objects)
    (root / 'Annotations' / f'{stem}.xml').write_text(
        f'<annotation><filename>{stem}.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>'
        f'</size>{objs}</annotation>')


def test_messy_voc_is_repaired_or_skipped_never_invalid(tmp_path, capsys):
    src = tmp_path / 'voc'
    _voc(src, 'a', [('  cat \n', (10, 10, 30, 40)),  # stray whitespace in the name: kept
                    ('dog', (-5, 20, 120, 60)),  # outside the image: clipped
                    ('cat', (50, 10, 50, 30)),  # zero width: skipped
                    ('cow', (1, 1, 5, 5))])  # unknown class: skipped
    _voc(src, 'b', [('dog', (60, 40, 20, 10)),  # corners swapped: negative size, bad input since issue 11
                    ('dog', (20, 10, 60, 40))])
    for i in range(8):
        _voc(src, f'c{i}', [('cat', (0, 0, 10, 10))])
    stats = voc2yolo.convert(src, tmp_path / 'out', ['cat', 'dog'])
    err = capsys.readouterr().err
    assert 'a.xml' in err and "'cow'" in err and 'degenerate' in err and 'b.xml' in err and 'negative size' in err
    # convert() keeps the original's promise (never stops; what is bad is left out with a message): --skip-bad
    assert stats.skipped == {'degenerate box': 1, 'unknown class': 1, 'negative size box': 1} and stats.clipped == 1
    labels = {f.stem: f.read_text().split() for s in voc2yolo.SPLITS for f in (tmp_path / 'out' / 'labels' / s).glob('*.txt')}
    assert labels['a'][:5] == ['0', '0.200000', '0.500000', '0.200000', '0.600000']
    assert labels['a'][5:] == ['1', '0.500000', '0.700000', '1.000000', '0.600000']  # (0, 20, 100, 50)
    assert labels['b'] == ['1', '0.400000', '0.500000', '0.400000', '0.600000']
    for s in voc2yolo.SPLITS:
        assert_valid_labels(tmp_path / 'out' / 'labels' / s, 2)


def test_without_imagesets_the_split_is_seeded_and_deterministic(tmp_path, capsys):
    src = tmp_path / 'voc'
    for i in range(20):
        _voc(src, f'im{i:02d}', [('cat', (0, 0, 10, 10))])
    splits1, how = voc2yolo.read_splits(src)
    splits2, _ = voc2yolo.read_splits(src)
    assert splits1 == splits2 and f'seed {voc2yolo.SPLIT_SEED}' in how
    assert [len(splits1[s]) for s in voc2yolo.SPLITS] == [14, 4, 2]
    assert sorted(sum(splits1.values(), [])) == [f'im{i:02d}' for i in range(20)]
    voc2yolo.convert(src, tmp_path / 'out', ['cat'])
    assert 'seed 0' in capsys.readouterr().out


def test_user_path_without_annotations_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match='no Pascal VOC annotations'):
        voc2yolo.find_source(str(tmp_path))


def test_cli_takes_any_voc_layout_and_keeps_the_data_yaml(tmp_path, capsys):
    """Issue 11: annotations/ + images/ (no Annotations/, no ImageSets) was refused."""
    from PIL import Image
    src = tmp_path / 'voc'
    (src / 'annotations').mkdir(parents=True)
    (src / 'images').mkdir()
    for i in range(5):
        Image.new('RGB', (100, 50)).save(src / 'images' / f'{i}.jpg')
        (src / 'annotations' / f'{i}.xml').write_text(
            f'<annotation><filename>{i}.jpg</filename><object><name>cat</name><bndbox><xmin>0</xmin><ymin>0</ymin>'
            '<xmax>10</xmax><ymax>10</ymax></bndbox></object></annotation>')
    data = tmp_path / 'my.yaml'
    data.write_text('names: [cat]\n')
    assert voc2yolo.main(['--src', str(src), '--data', str(data), '--dest', str(tmp_path / 'out')]) == 0
    assert data.read_text() == 'names: [cat]\n' and 'seed 0' in capsys.readouterr().out
    assert len(read_labels(tmp_path / 'out' / 'labels' / 'train')) == 4  # round(5 * 0.7) = 4 (and one in val)
