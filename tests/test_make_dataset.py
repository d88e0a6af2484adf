"""scripts/make_dataset.py (`make data SRC=... NAME=...`): VOC in any layout, COCO JSON, YOLO folders; bad input
named file by file with nothing written; atomic replace; BCCD the same through VOC and through COCO."""
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import PROJECT
from PIL import Image

import make_dataset
from dataset_formats import output

BCCD = PROJECT.parent / 'shared' / 'datasets' / 'BCCD'
COLORS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


# ---------------------------------------------------------------- tiny datasets

def image(path: Path, size=(64, 48), i=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new('RGB', size, COLORS[i % len(COLORS)]).save(path)
    return path


def voc_xml(path: Path, filename, objects, size=(64, 48)):
    """objects: [(name, (xmin, ymin, xmax, ymax))]; filename None: no <filename> element."""
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = ''.join(f'<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>'
                   f'<ymax>{b[3]}</ymax></bndbox></object>' for n, b in objects)
    name = '' if filename is None else f'<filename>{filename}</filename>'
    path.write_text(f'<annotation>{name}<size><width>{size[0]}</width><height>{size[1]}</height></size>{objs}'
                    '</annotation>')
    return path


BOX = (8, 6, 40, 30)  # in a 64x48 image: YOLO 0.375 0.375 0.5 0.5
LINE = '0.375000 0.375000 0.500000 0.500000'


def voc_dataset(root: Path, layout: str, n=6):
    """n images with one box each, classes 'dog' (even) and 'cat' (odd), in one of the VOC layouts people use."""
    for i in range(n):
        stem = f'img{i}'
        cls = 'dog' if i % 2 == 0 else 'cat'
        if layout == 'voc':
            xml, img = root / 'Annotations' / f'{stem}.xml', root / 'JPEGImages' / f'{stem}.jpg'
        elif layout == 'annotations+images':
            xml, img = root / 'annotations' / f'{stem}.xml', root / 'images' / f'{stem}.jpg'
        elif layout == 'annots+images nested':
            part = f'part{i % 2}'
            xml, img = root / 'annots' / part / f'{stem}.xml', root / 'images' / part / 'sub' / f'{stem}.jpg'
        else:  # flat: XMLs and images in one folder
            xml, img = root / f'{stem}.xml', root / f'{stem}.jpg'
        image(img, i=i)
        voc_xml(xml, f'{stem}.jpg', [(cls, BOX)])
    return root


def image_sets(root: Path, **lists):
    main = root / 'ImageSets' / 'Main'
    main.mkdir(parents=True, exist_ok=True)
    for name, stems in lists.items():
        (main / f'{name}.txt').write_text(''.join(f'{s}\n' for s in stems))


def coco_json(path: Path, images, annotations, categories):
    """images: [(id, file_name, w, h)]; annotations: [(id, image_id, category_id, [x, y, w, h], iscrowd)];
    categories: [(id, name)]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        'info': {}, 'licenses': [],
        'images': [{'id': i, 'file_name': f, 'width': w, 'height': h} for i, f, w, h in images],
        'annotations': [{'id': a, 'image_id': im, 'category_id': c, 'bbox': b, 'area': b[2] * b[3], 'iscrowd': cr}
                        for a, im, c, b, cr in annotations],
        'categories': [{'id': i, 'name': n, 'supercategory': ''} for i, n in categories]}))
    return path


def yolo_dataset(root: Path, split_folders=True, n=4):
    for i in range(n):
        split = ('train' if i < n - 1 else 'val') if split_folders else ''
        image(root / 'images' / split / f'y{i}.jpg', i=i)
        (root / 'labels' / split).mkdir(parents=True, exist_ok=True)
        (root / 'labels' / split / f'y{i}.txt').write_text(f'{i % 2} {LINE}\n')
    return root


def run(src, out: Path, *args, name='mine'):
    """make_dataset.main into out/datasets/NAME and out/NAME.yaml; returns (status, dest, yaml path)."""
    dest, data = out / 'datasets' / name, out / f'{name}.yaml'
    rc = make_dataset.main(['--src', str(src), '--dest', str(dest), '--yaml', str(data), *map(str, args)])
    return rc, dest, data


def labels(dest: Path) -> dict:
    """'split/stem' -> label text, for every label file."""
    return {f'{f.parent.name}/{f.stem}': f.read_text() for f in sorted((dest / 'labels').glob('*/*.txt'))}


def split_counts(dest: Path) -> dict:
    return {d.name: len(list(d.iterdir())) for d in sorted((dest / 'images').iterdir()) if any(d.iterdir())}


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def assert_nothing_written(out: Path):
    assert not (out / 'datasets').exists() or not any((out / 'datasets').iterdir())
    assert not list(out.glob('*.yaml')) and not list(out.glob('.*'))


# ---------------------------------------------------------------- Pascal VOC

@pytest.mark.parametrize('layout', ['voc', 'annotations+images', 'annots+images nested', 'flat'])
def test_voc_in_any_layout(tmp_path, layout, capsys):
    src = voc_dataset(tmp_path / 'src', layout)
    rc, dest, data = run(src, tmp_path / 'out')
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'Pascal VOC: 6 XML files, 6 images' in out and 'seeded 0.7/0.2/0.1 split (seed 0)' in out
    got = labels(dest)
    assert sorted(k.split('/')[1] for k in got) == [f'img{i}' for i in range(6)]
    assert all(text == f'{1 if int(k[-1]) % 2 == 0 else 0} {LINE}\n' for k, text in got.items())  # cat 0, dog 1
    assert split_counts(dest) == {'test': 1, 'train': 4, 'val': 1}  # round(4.2), round(1.2), the rest
    d = load_yaml(data)
    assert d['names'] == {0: 'cat', 1: 'dog'}  # found in the data, sorted by name
    assert (d['path'], d['train'], d['val'], d['test']) == (str(dest), 'images/train', 'images/val', 'images/test')
    text = data.read_text()
    assert 'made by `python scripts/make_dataset.py --src' in text and 'seeded 0.7/0.2/0.1 split (seed 0)' in text
    assert str(src) in text and 'train: images/train  # 4 images, 4 boxes' in text


def test_voc_image_found_by_stem_when_filename_is_wrong_or_missing(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'annotations+images', n=4)
    voc_xml(src / 'annotations' / 'img1.xml', 'IMG_0001.JPG', [('cat', BOX)])  # renamed since
    voc_xml(src / 'annotations' / 'img2.xml', None, [('dog', BOX)])
    rc, dest, _ = run(src, tmp_path / 'out')
    assert rc == 0, capsys.readouterr()
    assert len(labels(dest)) == 4


def test_voc_imagesets_train_val_test(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'voc')
    image_sets(src, train=['img0', 'img1', 'img2'], val=['img3', 'img4'], test=['img5'],
               trainval=['img0', 'img1', 'img2', 'img3', 'img4'])
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0
    assert 'splits: ImageSets/Main (train 3, val 2, test 1)' in capsys.readouterr().out
    assert sorted(labels(dest)) == ['test/img5', 'train/img0', 'train/img1', 'train/img2', 'val/img3', 'val/img4']
    assert 'ImageSets/Main (train 3, val 2, test 1)' in data.read_text()


def test_voc_imagesets_train_val_only(tmp_path):
    src = voc_dataset(tmp_path / 'src', 'voc')
    image_sets(src, train=['img0', 'img1', 'img2', 'img3'], val=['img4', 'img5'])
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0 and split_counts(dest) == {'train': 4, 'val': 2}
    assert 'test' not in load_yaml(data) and '# no test split' in data.read_text()


def test_voc_imagesets_trainval_test(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'voc', n=10)
    image_sets(src, trainval=[f'img{i}' for i in range(9)], test=['img9'])
    rc, dest, _ = run(src, tmp_path / 'out')
    assert rc == 0
    assert split_counts(dest) == {'test': 1, 'train': 7, 'val': 2}  # 9 cut 7/2 (0.78/0.22, seed 0)
    assert 'trainval cut into train/val 0.78/0.22 (seed 0)' in capsys.readouterr().out


def test_split_and_seed_options(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'flat', n=10)
    rc, dest, _ = run(src, tmp_path / 'a', '--split', '0.5,0.5')
    assert rc == 0 and split_counts(dest) == {'train': 5, 'val': 5}
    rc, dest1, _ = run(src, tmp_path / 'b', '--seed', '1')
    rc, dest2, _ = run(src, tmp_path / 'c', '--seed', '1')
    rc, dest0, _ = run(src, tmp_path / 'd')
    assert labels(dest1) == labels(dest2) != labels(dest0)  # deterministic for a seed
    assert make_dataset.main(['--src', str(src), '--split', '0.7,x']) == 2
    assert '--split' in capsys.readouterr().err


def test_background_images_and_class_in_one_split(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'voc')
    voc_xml(src / 'Annotations' / 'img5.xml', 'img5.jpg', [])  # no objects: a background image
    voc_xml(src / 'Annotations' / 'img4.xml', 'img4.jpg', [('bird', BOX)])  # the only bird, in train
    image_sets(src, train=['img0', 'img1', 'img4'], val=['img2', 'img3'], test=['img5'])
    rc, dest, data = run(src, tmp_path / 'out', '--names', 'cat,dog,bird,fish')
    err = capsys.readouterr().err
    assert rc == 0
    assert labels(dest)['test/img5'] == '' and (dest / 'images' / 'test' / 'img5.jpg').exists()
    assert "class 'bird': boxes only in train (none in val, test)" in err
    assert "class 'fish': no boxes in any split" in err
    assert '1 images, 0 boxes, 1 background' in data.read_text()
    assert load_yaml(data)['names'] == {0: 'cat', 1: 'dog', 2: 'bird', 3: 'fish'}  # --names: that order


def test_data_yaml_fixes_names_and_order(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'flat')
    names = tmp_path / 'names.yaml'
    names.write_text('names:\n  0: dog\n  1: cat\n')
    rc, dest, data = run(src, tmp_path / 'out', '--data', names)
    assert rc == 0 and load_yaml(data)['names'] == {0: 'dog', 1: 'cat'}
    assert all(text.startswith('0 ') == (int(k[-1]) % 2 == 0) for k, text in labels(dest).items())
    rc, dest, data = run(src, tmp_path / 'out2', '--data', names, '--yaml', names)  # the --data file: kept
    assert rc == 0 and names.read_text() == 'names:\n  0: dog\n  1: cat\n'


# ---------------------------------------------------------------- COCO

def coco_source(root: Path, split_files=False):
    """Category ids 7 'zebra' and 3 'ant' (ids arbitrary, out of order); a crowd annotation; a background image."""
    cats = [(7, 'zebra'), (3, 'ant')]
    if not split_files:
        for i in range(5):
            image(root / 'images' / f'c{i}.jpg', i=i)
        anns = [(1, 0, 7, [8, 6, 32, 24], 0), (2, 1, 3, [8, 6, 32, 24], 0), (3, 1, 7, [0, 0, 64, 48], 1),
                (4, 2, 3, [8, 6, 32, 24], 0), (5, 3, 7, [8, 6, 32, 24], 0)]  # c4: no annotation
        coco_json(root / 'labels.json', [(i, f'c{i}.jpg', 64, 48) for i in range(5)], anns, cats)
    else:
        for split, n in (('train', 3), ('val', 2)):
            for i in range(n):
                image(root / f'{split}2017' / f'{split}{i}.jpg', i=i)
            anns = [(10 + i, 100 + i, (7, 3)[i % 2], [8, 6, 32, 24], 0) for i in range(n)]
            coco_json(root / 'annotations' / f'instances_{split}2017.json',
                      [(100 + i, f'{split}{i}.jpg', 64, 48) for i in range(n)], anns, cats)
    return root


def test_coco_single_file(tmp_path, capsys):
    src = coco_source(tmp_path / 'src')
    rc, dest, data = run(src, tmp_path / 'out')
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert 'COCO JSON: labels.json, 5 images' in out and 'seeded 0.7/0.2/0.1 split' in out
    assert '1 crowd annotations (iscrowd: 1) skipped' in err
    assert load_yaml(data)['names'] == {0: 'ant', 1: 'zebra'}  # by category id: 3, 7
    got = {k.split('/')[1]: v for k, v in labels(dest).items()}
    assert got == {'c0': f'1 {LINE}\n', 'c1': f'0 {LINE}\n', 'c2': f'0 {LINE}\n', 'c3': f'1 {LINE}\n', 'c4': ''}
    assert 'crowd annotation: 1' in data.read_text()


def test_coco_one_file_per_split(tmp_path, capsys):
    src = coco_source(tmp_path / 'src', split_files=True)
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0, capsys.readouterr().err
    assert sorted(labels(dest)) == ['train/train0', 'train/train1', 'train/train2', 'val/val0', 'val/val1']
    assert labels(dest)['val/val1'] == f'0 {LINE}\n'  # category 3 'ant' -> 0
    assert 'splits: train: annotations/instances_train2017.json (3 images); val: annotations/' in data.read_text()
    rc, dest, _ = run(src / 'annotations' / 'instances_val2017.json', tmp_path / 'one')  # one file: images by name
    assert rc == 0 and len(labels(dest)) == 2


# ---------------------------------------------------------------- YOLO

def test_yolo_with_data_yaml_and_split_folders(tmp_path):
    src = yolo_dataset(tmp_path / 'src')
    (src / 'data.yaml').write_text('path: /elsewhere\ntrain: images/train\nval: images/val\nnames: [a, b]\n')
    image(src / 'images' / 'train' / 'bg.jpg')  # no label file: background
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0
    assert labels(dest) == {'train/bg': '', 'train/y0': f'0 {LINE}\n', 'train/y1': f'1 {LINE}\n',
                            'train/y2': f'0 {LINE}\n', 'val/y3': f'1 {LINE}\n'}
    assert load_yaml(data)['names'] == {0: 'a', 1: 'b'}
    assert 'splits: train: folder images/train (4 images); val: folder images/val (1 images)' in data.read_text()


def test_yolo_same_name_in_two_splits_clashes_only_when_resplit(tmp_path, capsys):
    src = yolo_dataset(tmp_path / 'src')
    image(src / 'images' / 'val' / 'y0.jpg')  # y0 in train and in val: fine as long as they stay apart
    rc, dest, _ = run(src, tmp_path / 'out')
    assert rc == 0 and 'val/y0' in labels(dest) and 'train/y0' in labels(dest)
    assert run(src, tmp_path / 'out2', '--split', '0.8,0.2')[0] == 2
    assert 'images/train/y0.jpg: the same output name (y0) as images/val/y0.jpg' in capsys.readouterr().err


def test_yolo_train_folder_only_gets_a_val_split_cut_out_of_it(tmp_path, capsys):
    src = tmp_path / 'src'
    for i in range(10):
        image(src / 'train' / 'images' / f't{i}.jpg', i=i)  # Roboflow's layout
        (src / 'train' / 'labels').mkdir(parents=True, exist_ok=True)
        (src / 'train' / 'labels' / f't{i}.txt').write_text(f'0 {LINE}\n')
    rc, dest, _ = run(src, tmp_path / 'out', '--names', 'thing')
    assert rc == 0 and split_counts(dest) == {'train': 8, 'val': 2}
    out = capsys.readouterr().out
    assert 'splits: train: folder train (10 images); val: cut out of train (seeded, 22%, seed 0)' in out


def test_yolo_flat_with_classes_txt_and_polygons(tmp_path):
    src = yolo_dataset(tmp_path / 'src', split_folders=False, n=5)
    (src / 'labels' / 'classes.txt').write_text('cat\ndog\n')
    (src / 'labels' / 'y4.txt').write_text('1 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n')  # a segment
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0 and load_yaml(data)['names'] == {0: 'cat', 1: 'dog'}
    assert sum(split_counts(dest).values()) == 5
    assert '1 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n' in labels(dest).values()


def test_yolo_labelimg_txt_beside_images_without_names(tmp_path, capsys):
    src = tmp_path / 'src'
    for i in range(3):
        image(src / f'p{i}.png', i=i)
        (src / f'p{i}.txt').write_text(f'{i} {LINE}\n')
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0 and load_yaml(data)['names'] == {0: '0', 1: '1', 2: '2'}
    assert 'classes are named by their ids' in capsys.readouterr().err


# ---------------------------------------------------------------- bad input

def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def bad_voc(kind, src):
    """Make `src` (a 6-image annotations+images VOC set) bad; returns (file named, words of the message)."""
    a, im = src / 'annotations', src / 'images'
    if kind == 'malformed XML':
        _truncate(a / 'img1.xml')
        return 'annotations/img1.xml', 'malformed XML'
    if kind == 'annotation without image':
        (im / 'img1.jpg').unlink()
        return 'annotations/img1.xml', 'no image for it'
    if kind == 'image that does not decode':
        (im / 'img1.jpg').write_bytes(b'not a JPEG at all')
        return 'images/img1.jpg', 'cannot be decoded'
    if kind == 'image cut off in its header':  # nothing of the picture left to restore
        Image.effect_noise((64, 48), 50).convert('RGB').save(im / 'img1.jpg')
        (im / 'img1.jpg').write_bytes((im / 'img1.jpg').read_bytes()[:200])
        return 'images/img1.jpg', 'cannot be decoded as an image, not even in part'
    if kind == 'negative size box':
        voc_xml(a / 'img1.xml', 'img1.jpg', [('cat', BOX), ('cat', (40, 6, 8, 30))])
        return 'annotations/img1.xml', 'negative size'
    if kind == 'box outside the image':
        voc_xml(a / 'img1.xml', 'img1.jpg', [('cat', BOX), ('cat', (70, 50, 90, 60))])
        return 'annotations/img1.xml', 'entirely outside the 64x48 image'
    if kind == 'unknown class (names fixed)':
        voc_xml(a / 'img1.xml', 'img1.jpg', [('cat', BOX), ('cow', BOX)])
        return 'annotations/img1.xml', "unknown class 'cow' (names from --names: cat, dog)"
    if kind == 'duplicate image names':
        image(src / 'more' / 'img1.jpg')
        voc_xml(src / 'more' / 'other.xml', 'img1.jpg', [('cat', BOX)])
        return 'annotations/img1.xml', '2 candidate images: images/img1.jpg, more/img1.jpg'
    if kind == 'duplicate output name':
        image(src / 'more' / 'img1.png')
        voc_xml(src / 'more' / 'x.xml', 'img1.png', [('cat', BOX)])
        return 'more/img1.png', 'same output name (img1) as images/img1.jpg'
    if kind == 'non-UTF-8 name':
        bad = os.fsencode(im) + b'/caf\xe9.jpg'  # Latin-1, as an old camera or zip might write it
        with open(bad, 'wb') as f:
            f.write((im / 'img1.jpg').read_bytes())
        voc_xml(a / 'cafe.xml', None, [('cat', BOX)])
        os.rename(a / 'cafe.xml', os.fsencode(a) + b'/caf\xe9.xml')
        return repr('images/caf\udce9.jpg'), 'not valid UTF-8'
    raise ValueError(kind)


BAD_VOC = ['malformed XML', 'annotation without image', 'image that does not decode', 'image cut off in its header',
           'negative size box', 'box outside the image', 'unknown class (names fixed)', 'duplicate image names',
           'duplicate output name', 'non-UTF-8 name']


@pytest.mark.parametrize('kind', BAD_VOC)
def test_bad_voc_input_is_named_and_nothing_is_written(tmp_path, capsys, kind):
    src = voc_dataset(tmp_path / 'src', 'annotations+images')
    file, words = bad_voc(kind, src)
    rc, dest, data = run(src, tmp_path / 'out', '--names', 'cat,dog')
    err = capsys.readouterr().err
    assert rc == 2
    assert f'make_dataset: error: {file}: ' in err and words in err, err
    assert '--skip-bad' in err
    assert_nothing_written(tmp_path / 'out')
    rc, dest, data = run(src, tmp_path / 'out', '--names', 'cat,dog', '--skip-bad')
    out, err = capsys.readouterr()
    assert rc == 0 and f'make_dataset: skipped: {file}: ' in err
    assert '--skip-bad: left out' in out and data.exists()
    kept = labels(dest)
    if kind in ('negative size box', 'box outside the image', 'unknown class (names fixed)'):
        assert len(kept) == 6 and kept[next(k for k in kept if k.endswith('img1'))] == f'0 {LINE}\n'  # box left out
        assert 'left out 0 files and 1 boxes' in out
    elif kind == 'duplicate image names':  # img1.xml left out; more/other.xml has its image beside it
        assert len(kept) == 6 and 'annotations/img1.xml' in err and 'more/other.xml' not in err
    elif kind == 'duplicate output name':
        assert len(kept) == 5  # both images of the clash left out
    elif kind == 'non-UTF-8 name':
        assert len(kept) == 6  # the six good ones
    else:
        assert len(kept) == 5 and not any(k.endswith('img1') for k in kept)


def test_all_problems_are_listed_through_the_cli(tmp_path):
    src = voc_dataset(tmp_path / 'src', 'flat')
    _truncate(src / 'img0.xml')
    (src / 'img2.jpg').write_bytes(b'\xff\xd8garbage')
    voc_xml(src / 'img3.xml', 'img3.jpg', [('cat', (40, 6, 8, 30))])
    out = tmp_path / 'out'
    r = subprocess.run([sys.executable, str(PROJECT / 'scripts' / 'make_dataset.py'), '--src', src, '--name', 'x',
                        '--dest', out / 'x', '--yaml', out / 'x.yaml'], capture_output=True, text=True)
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith('make_dataset: error: img')]
    assert [e.split(':')[2].strip() for e in errors] == ['img0.xml', 'img2.jpg', 'img3.xml'], r.stderr
    assert '3 problems in' in r.stderr and 'nothing written' in r.stderr
    assert not out.exists() or not any(out.iterdir())


def test_bad_coco_input(tmp_path, capsys):
    src = coco_source(tmp_path / 'src')
    data = json.loads((src / 'labels.json').read_text())
    data['annotations'].append({'id': 9, 'image_id': 99, 'category_id': 7, 'bbox': [1, 1, 5, 5], 'iscrowd': 0})
    data['annotations'].append({'id': 10, 'image_id': 0, 'category_id': 5, 'bbox': [1, 1, 5, 5], 'iscrowd': 0})
    data['annotations'].append({'id': 11, 'image_id': 0, 'category_id': 7, 'bbox': [1, 1, -5, 5], 'iscrowd': 0})
    data['images'].append({'id': 5, 'file_name': 'gone.jpg', 'width': 64, 'height': 48})
    (src / 'labels.json').write_text(json.dumps(data))
    rc, _, _ = run(src, tmp_path / 'out')
    err = capsys.readouterr().err
    assert rc == 2
    for words in ("annotation id 9: its image_id 99 is not in \"images\"", 'annotation id 10: its category_id 5',
                  'annotation id 11 (bbox [1, 1, -5, 5]): box (xmin, ymin, xmax, ymax) (1, 1, -4, 6) has negative',
                  "image id 5: 'gone.jpg' not found"):
        assert f'make_dataset: error: labels.json: {words}' in err, err
    assert_nothing_written(tmp_path / 'out')
    rc, dest, _ = run(src, tmp_path / 'out', '--skip-bad')
    assert rc == 0 and len(labels(dest)) == 5
    assert 'left out 1 files and 3 boxes' in capsys.readouterr().out  # gone.jpg; annotations 9, 10 and 11
    data['images'].append({'id': 6, 'file_name': 'c1.jpg', 'width': 64, 'height': 48})  # c1.jpg again
    (src / 'labels.json').write_text(json.dumps(data))
    assert run(src, tmp_path / 'out3')[0] == 2
    assert ('make_dataset: error: labels.json: image id 6: its image images/c1.jpg is also the image of labels.json '
            '(image id 1)') in capsys.readouterr().err
    _truncate(src / 'labels.json')
    rc, _, _ = run(src, tmp_path / 'out2')
    assert rc == 2 and 'make_dataset: error: labels.json: malformed JSON' in capsys.readouterr().err


def test_bad_yolo_input(tmp_path, capsys):
    src = yolo_dataset(tmp_path / 'src')
    (src / 'data.yaml').write_text('names: [a, b]\n')
    (src / 'labels' / 'train' / 'y0.txt').write_text(f'5 {LINE}\n')  # no class 5
    (src / 'labels' / 'train' / 'y1.txt').write_text('0 0.5 1.5 0.2 0.2\n')  # y beyond the image
    (src / 'labels' / 'train' / 'y2.txt').write_text('0 0.5 0.5 0.2\n')  # 4 columns
    (src / 'labels' / 'train' / 'lost.txt').write_text(f'0 {LINE}\n')  # no image
    rc, _, _ = run(src, tmp_path / 'out')
    err = capsys.readouterr().err
    assert rc == 2
    for file, words in [('labels/train/y0.txt', 'line 1: unknown class id 5 (names from data.yaml: 0: a, 1: b)'),
                        ('labels/train/y1.txt', 'line 1: coordinates outside [0, 1]'),
                        ('labels/train/y2.txt', 'line 1: 4 columns'),
                        ('labels/train/lost.txt', 'label file without an image (orphan)')]:
        assert f'make_dataset: error: {file}: {words}' in err, err
    assert_nothing_written(tmp_path / 'out')
    rc, dest, _ = run(src, tmp_path / 'out', '--skip-bad')
    assert rc == 0 and labels(dest)['train/y0'] == '' and labels(dest)['val/y3'] == f'1 {LINE}\n'


# ---------------------------------------------------------------- format, names, destination

def test_format_detection_and_forcing(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'flat')
    assert run(src, tmp_path / 'a', '--format', 'coco')[0] == 2  # forced: no COCO JSON here
    assert 'nothing to convert as COCO JSON' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        make_dataset.main(['--src', str(src), '--format', 'labelme'])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "invalid choice: 'labelme' (choose from 'voc', 'coco', 'yolo')" in err
    (src / 'img0.txt').write_text(f'0 {LINE}\n')  # now also a YOLO label beside an image
    assert run(src, tmp_path / 'b')[0] == 2
    assert 'looks like Pascal VOC and YOLO: pass --format voc|coco|yolo' in capsys.readouterr().err
    assert run(src, tmp_path / 'c', '--format', 'voc')[0] == 0
    assert run(coco_source(tmp_path / 'coco'), tmp_path / 'e', '--format', 'yolo')[0] == 2
    assert 'nothing to convert as YOLO' in capsys.readouterr().err
    voc_xml(src / 'img0.xml', 'img0.jpg', [])
    for i in range(1, 6):
        (src / f'img{i}.xml').unlink()
    assert run(src, tmp_path / 'f', '--format', 'voc')[0] == 2  # one background image, no class anywhere
    assert 'no classes: no object in any annotation; pass --names' in capsys.readouterr().err
    assert run(tmp_path / 'missing', tmp_path / 'd')[0] == 2
    assert 'missing: no such file or folder' in capsys.readouterr().err
    (tmp_path / 'empty').mkdir()
    assert run(tmp_path / 'empty', tmp_path / 'd')[0] == 2
    assert 'no Pascal VOC XML, COCO JSON or YOLO label files found' in capsys.readouterr().err


def test_default_name_and_yaml_path():
    assert make_dataset.default_name(PROJECT / 'configs' / 'data') == 'data'
    assert make_dataset.default_name(PROJECT / 'configs' / 'data' / 'bccd.yaml') == 'bccd'
    assert make_dataset.yaml_path_value(PROJECT / 'datasets' / 'mine') == '../datasets/mine'  # as bccd.yaml


def test_destination_that_is_not_a_dataset_or_holds_the_source_is_refused(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'flat')
    assert make_dataset.main(['--src', str(src), '--dest', str(src), '--yaml', str(tmp_path / 'x.yaml')]) == 2
    assert 'overlap' in capsys.readouterr().err
    (tmp_path / 'mine' / 'notes').mkdir(parents=True)
    assert make_dataset.main(['--src', str(src), '--dest', str(tmp_path / 'mine'),
                              '--yaml', str(tmp_path / 'x.yaml')]) == 2
    assert 'is not a converted dataset (it holds notes)' in capsys.readouterr().err


def test_replace_is_atomic(tmp_path, monkeypatch, capsys):
    src = voc_dataset(tmp_path / 'src', 'flat')
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0
    (dest / '.converted').touch()
    before, yaml_before = labels(dest), data.read_text()
    voc_xml(src / 'img0.xml', 'img0.jpg', [('cat', BOX), ('cat', BOX)])
    calls = []

    def fail_on_third(a, b):  # a crash halfway through writing the new dataset
        calls.append(a)
        if len(calls) == 3:
            raise OSError('disk full')
        return os.link(a, b) or True
    monkeypatch.setattr(output, '_link_or_copy', fail_on_third)
    assert run(src, tmp_path / 'out')[0] == 1
    assert 'make_dataset: error: disk full; nothing written' in capsys.readouterr().err
    assert labels(dest) == before and data.read_text() == yaml_before and (dest / '.converted').exists()
    assert sorted(p.name for p in (tmp_path / 'out').iterdir()) == ['datasets', 'mine.yaml']  # no temporaries
    assert os.listdir(tmp_path / 'out' / 'datasets') == ['mine']
    monkeypatch.undo()
    rc, dest, data = run(src, tmp_path / 'out')
    assert rc == 0 and labels(dest) != before and not (dest / '.converted').exists()  # replaced as a whole
    assert [k for k in labels(dest) if labels(dest)[k].count('\n') == 2] == [k for k in before if k.endswith('img0')]
    assert sorted(os.listdir(tmp_path / 'out' / 'datasets')) == ['mine']


# ---------------------------------------------------------------- BCCD

def bccd_as_coco(dest: Path):
    """BCCD's VOC XMLs as COCO: one JSON per ImageSets split, categories in bccd.yaml's order (ids 1..3)."""
    import xml.etree.ElementTree as ET
    cats = {'RBC': 1, 'WBC': 2, 'Platelets': 3}
    for split in ('train', 'val', 'test'):
        images, anns = [], []
        for i, stem in enumerate((BCCD / 'ImageSets' / 'Main' / f'{split}.txt').read_text().split()):
            root = ET.parse(BCCD / 'Annotations' / f'{stem}.xml').getroot()
            images.append((i, f'{stem}.jpg', int(root.findtext('size/width')), int(root.findtext('size/height'))))
            for obj in root.findall('object'):
                x1, y1, x2, y2 = (float(obj.findtext(f'bndbox/{k}')) for k in ('xmin', 'ymin', 'xmax', 'ymax'))
                anns.append((len(anns), i, cats[obj.findtext('name').strip()], [x1, y1, x2 - x1, y2 - y1], 0))
        coco_json(dest / 'annotations' / f'instances_{split}.json', images, anns, [(v, k) for k, v in cats.items()])
    os.symlink(BCCD / 'JPEGImages', dest / 'images')
    return dest


@pytest.mark.skipif(not BCCD.exists(), reason='needs ../shared/datasets/BCCD')
def test_bccd_through_voc_and_through_its_coco_export_give_the_same_labels(tmp_path, capsys):
    bccd = PROJECT / 'configs' / 'data' / 'bccd.yaml'
    committed = bccd.read_text()
    rc, voc_dest, _ = run(BCCD, tmp_path / 'voc', '--data', bccd, '--yaml', bccd, name='BCCD')
    assert rc == 0 and bccd.read_text() == committed  # the --data file is kept as it is
    out = capsys.readouterr().out
    assert 'ImageSets/Main (train 205, val 87, test 72)' in out and 'RBC, WBC, Platelets' in out
    assert split_counts(voc_dest) == {'test': 72, 'train': 205, 'val': 87}
    coco = bccd_as_coco(tmp_path / 'coco-src')
    rc, coco_dest, data = run(coco, tmp_path / 'coco', name='BCCD')
    assert rc == 0
    assert load_yaml(data)['names'] == {0: 'RBC', 1: 'WBC', 2: 'Platelets'}  # category ids 1, 2, 3
    voc_labels = labels(voc_dest)
    assert len(voc_labels) == 364 and labels(coco_dest) == voc_labels
    assert sum(t.count('\n') for t in voc_labels.values()) == 4153 + 372 + 361


def test_converted_dataset_loads_in_yolov5(tmp_path, yolo):
    """YOLOv5's own loader finds every image and label, backgrounds as such, and nothing corrupt."""
    import numpy as np
    from utils.dataloaders import LoadImagesAndLabels
    src = coco_source(tmp_path / 'src')
    rc, dest, _ = run(src, tmp_path / 'out', '--split', '0.6,0.4')
    assert rc == 0
    for split, n in split_counts(dest).items():
        ds = LoadImagesAndLabels(str(dest / 'images' / split), img_size=64, batch_size=2)
        cache = np.load(dest / 'labels' / f'{split}.cache', allow_pickle=True).item()  # what the loader saw
        found, missing, empty, corrupt, total = cache['results']
        ours = {k: t for k, t in labels(dest).items() if k.startswith(f'{split}/')}
        assert (total, corrupt, missing) == (n, 0, 0) and empty == sum(t == '' for t in ours.values())
        assert sum(len(lb) for lb in ds.labels) == sum(t.count('\n') for t in ours.values())


def test_ctrl_c_during_a_first_conversion_leaves_nothing(tmp_path, monkeypatch):
    src = voc_dataset(tmp_path / 'src', 'flat')

    def interrupted(a, b):
        raise KeyboardInterrupt
    monkeypatch.setattr(output, '_link_or_copy', interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(src, tmp_path / 'out')
    assert os.listdir(tmp_path / 'out' / 'datasets') == [] and os.listdir(tmp_path / 'out') == ['datasets']


# ---------------------------------------------------------------- damaged images: restored, not refused

def noise_image(path: Path, fmt='JPEG'):
    """A photo-like image (noise compresses badly: cutting its end cuts picture data, not the header)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise((64, 48), 50).convert('RGB').save(path, fmt)
    return path


def cut_off(path: Path, n=300):
    """The file missing its last n bytes, as a cut-off download leaves it."""
    path.write_bytes(path.read_bytes()[:-n])
    return path


def decodes_strictly(path: Path) -> Image.Image:
    """Pillow as YOLOv5 and most tools run it: a truncated file raises."""
    from PIL import ImageFile
    assert not ImageFile.LOAD_TRUNCATED_IMAGES  # the conversion must not leave Pillow's global switch on
    with Image.open(path) as im:
        im.load()
        return im.copy()


def yolov5_verify(im_file: Path, lb_file: Path):
    """YOLOv5's own check of an image and its label, on a copy (it re-saves a JPEG it finds corrupt, in place)."""
    from utils.dataloaders import verify_image_label
    before = im_file.read_bytes()
    _, lb, shape, _, nm, nf, ne, nc, msg = verify_image_label((str(im_file), str(lb_file), ''))
    return {'corrupt': nc, 'msg': msg, 'shape': shape, 'boxes': 0 if lb is None else len(lb),
            'rewritten': im_file.read_bytes() != before}


@pytest.mark.parametrize('fmt,suffix', [('JPEG', '.jpg'), ('PNG', '.png')])
def test_cut_off_image_is_restored_and_yolov5_loads_it(tmp_path, capsys, yolo, fmt, suffix):
    src = voc_dataset(tmp_path / 'src', 'annotations+images')
    (src / 'images' / 'img1.jpg').unlink()
    full = decodes_strictly(noise_image(src / 'images' / f'img1{suffix}', fmt))
    cut = cut_off(src / 'images' / f'img1{suffix}')
    cut_bytes = cut.read_bytes()
    with pytest.raises(OSError, match='truncated'):
        decodes_strictly(cut)
    rc, dest, data = run(src, tmp_path / 'out')
    out, err = capsys.readouterr()
    assert rc == 0, err
    warning = next(w for w in err.splitlines() if w.startswith(f'make_dataset: warning: images/img1{suffix}: '))
    assert 'damaged or cut off (OSError: ' in warning and 'truncated' in warning.lower()
    assert 'restored: what decodes is written as a complete image' in warning
    assert 'images restored from damaged files: 1' in out and '5 images hard-linked, 0 copied, 1 restored' in out
    assert 'images restored from damaged files: 1' in data.read_text()
    (restored,) = dest.glob(f'images/*/img1{suffix}')
    assert cut.read_bytes() == cut_bytes and restored.stat().st_ino != cut.stat().st_ino  # the source untouched
    im = decodes_strictly(restored)
    assert im.size == (64, 48)
    top = [abs(a - b) for a, b in zip(im.crop((0, 0, 64, 8)).tobytes(), full.crop((0, 0, 64, 8)).tobytes())]
    assert sum(top) / len(top) < 8  # what decoded is kept (JPEG: re-encoded with the source's tables)
    check = yolov5_verify(restored, dest / 'labels' / restored.parent.name / 'img1.txt')
    assert check == {'corrupt': 0, 'msg': '', 'shape': (64, 48), 'boxes': 1, 'rewritten': False}
    broken = Path(shutil.copy(cut, tmp_path / f'copy{suffix}'))  # without the conversion, YOLOv5 drops it
    assert yolov5_verify(broken, tmp_path / 'none.txt')['corrupt'] == 1


def test_jpeg_with_bytes_after_its_end_is_copied_with_an_end_marker(tmp_path, capsys, yolo):
    src = voc_dataset(tmp_path / 'src', 'annotations+images')
    trailer = src / 'images' / 'img2.jpg'
    trailer.write_bytes(noise_image(trailer).read_bytes() + b'camera data')  # decodes in full, no end marker
    source_bytes = trailer.read_bytes()
    rc, dest, _ = run(src, tmp_path / 'out')
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert '1 JPEGs do not end with the JPEG end marker (images/img2.jpg): copied with the marker appended' in err
    assert 'JPEG end marker appended: 1' in out and '1 copied with a JPEG end marker' in out
    (written,) = dest.glob('images/*/img2.jpg')
    assert written.read_bytes() == source_bytes + b'\xff\xd9' and trailer.read_bytes() == source_bytes
    assert decodes_strictly(written).tobytes() == decodes_strictly(trailer).tobytes()  # same pixels
    check = yolov5_verify(written, dest / 'labels' / written.parent.name / 'img2.txt')
    assert check == {'corrupt': 0, 'msg': '', 'shape': (64, 48), 'boxes': 1, 'rewritten': False}


def test_image_no_decoder_reads_is_still_an_error_beside_a_restored_one(tmp_path, capsys):
    src = voc_dataset(tmp_path / 'src', 'annotations+images')
    cut_off(noise_image(src / 'images' / 'img1.jpg'))  # restorable
    (src / 'images' / 'img3.jpg').write_bytes(random.Random(0).randbytes(2000))  # not an image at all
    rc, _, _ = run(src, tmp_path / 'out')
    err = capsys.readouterr().err
    assert rc == 2
    assert 'make_dataset: error: images/img3.jpg: cannot be decoded as an image, not even in part' in err
    assert 'error: images/img1.jpg' not in err and '1 problems in' in err
    assert_nothing_written(tmp_path / 'out')
    rc, dest, _ = run(src, tmp_path / 'out', '--skip-bad')
    out, err = capsys.readouterr()
    assert rc == 0 and 'make_dataset: skipped: images/img3.jpg: cannot be decoded' in err
    assert 'left out 1 files and 0 boxes' in out and 'images restored from damaged files: 1' in out
    assert sorted(k.split('/')[1] for k in labels(dest)) == ['img0', 'img1', 'img2', 'img4', 'img5']


# ---------------------------------------------------------------- the source's own split folders

def voc_pair(folder: Path, stem: str, i=0):
    """An image and its XML side by side, as LabelImg saves them."""
    image(folder / f'{stem}.jpg', i=i)
    voc_xml(folder / f'{stem}.xml', f'{stem}.jpg', [(('cat', 'dog')[i % 2], BOX)])


def yolo_pair(folder: Path, stem: str, i=0):
    """images/STEM.jpg and labels/STEM.txt under folder (Roboflow's train/images, train/labels)."""
    image(folder / 'images' / f'{stem}.jpg', i=i)
    (folder / 'labels').mkdir(parents=True, exist_ok=True)
    (folder / 'labels' / f'{stem}.txt').write_text(f'{i % 2} {LINE}\n')


def splits_of(dest: Path) -> dict:
    """split -> sorted image stems."""
    return {split: sorted(p.stem for p in (dest / 'images' / split).iterdir()) for split in ('train', 'val', 'test')
            if (dest / 'images' / split).is_dir()}


def test_split_folder_names():
    from dataset_formats.splits import folder_name_split, split_folder
    said = {n: folder_name_split(n) for n in ('train', 'Train', 'VALID', 'validation', 'val', 'val2017', 'test',
                                              'training', 'testing')}
    assert said == {'train': 'train', 'Train': 'train', 'VALID': 'val', 'validation': 'val', 'val': 'val',
                    'val2017': 'val', 'test': 'test', 'training': 'train', 'testing': 'test'}
    for name in ('training_data', 'contest', 'train_zip', 'test_zip', 'trainval', 'latest', 'my_val', 'images'):
        assert folder_name_split(name) is None, name
    root = Path('/data')  # the innermost split folder counts; none above the source
    assert split_folder(root / 'train' / 'x' / 'val' / 'a.jpg', root) == ('val', root / 'train' / 'x' / 'val')
    assert split_folder(root / 'train' / 'a.jpg', root / 'train') is None


def test_voc_nested_split_folders_keep_their_splits(tmp_path, capsys):
    src = tmp_path / 'src'
    for i in range(10):
        voc_pair(src / 'train_zip' / 'train', f't{i}', i)
    for i in range(3):
        voc_pair(src / 'test_zip' / 'test', f'e{i}', i)
    voc_pair(src / 'train_zip' / 'train', 'same', 0)  # one name in both folders: each XML has its image beside it
    voc_pair(src / 'test_zip' / 'test', 'same', 1)
    rc, dest, data = run(src, tmp_path / 'out')
    out = capsys.readouterr().out
    assert rc == 0, out
    how = ('train: folder train_zip/train (11 images); test: folder test_zip/test (4 images); '
           'val: cut out of train (seeded, 22%, seed 0)')
    assert f'splits: {how}' in out and f'splits: {how}' in data.read_text()
    got = splits_of(dest)
    assert got['test'] == ['e0', 'e1', 'e2', 'same']  # the dataset's own test images: none in training
    assert sorted(got['train'] + got['val']) == sorted([f't{i}' for i in range(10)] + ['same'])
    assert len(got['val']) == 2 and labels(dest)['test/same'] == f'1 {LINE}\n'  # test/same.xml says dog


def test_folders_merely_containing_a_split_word_are_not_splits(tmp_path, capsys):
    src = tmp_path / 'src'
    for i in range(6):
        voc_pair(src / ('training_data' if i < 3 else 'contest'), f'p{i}', i)
    rc, dest, _ = run(src, tmp_path / 'out')
    assert rc == 0 and 'seeded 0.7/0.2/0.1 split (seed 0) (the source has no splits)' in capsys.readouterr().out


def test_coco_json_per_nested_split_folder(tmp_path, capsys):
    src, cats = tmp_path / 'src', [(1, 'cat'), (2, 'dog')]
    for zip_name, split, n in (('train_zip', 'train', 5), ('valid_zip', 'valid', 2), ('test_zip', 'Test', 3)):
        folder = src / zip_name / split
        for i in range(n):
            image(folder / 'images' / f'{split}{i}.jpg', i=i)
        coco_json(folder / 'annotations' / 'data.json', [(i, f'{split}{i}.jpg', 64, 48) for i in range(n)],
                  [(i, i, 1 + i % 2, [8, 6, 32, 24], 0) for i in range(n)], cats)
    rc, dest, data = run(src, tmp_path / 'out')
    out = capsys.readouterr().out
    assert rc == 0, out
    assert ('splits: train: train_zip/train/annotations/data.json (5 images); val: valid_zip/valid/annotations/'
            'data.json (2 images); test: test_zip/Test/annotations/data.json (3 images)') in data.read_text()
    assert splits_of(dest) == {'train': [f'train{i}' for i in range(5)], 'val': ['valid0', 'valid1'],
                               'test': ['Test0', 'Test1', 'Test2']}


def test_coco_one_json_with_images_in_split_folders(tmp_path, capsys):
    src = tmp_path / 'src'
    files = [('train', f'a{i}') for i in range(6)] + [('valid', 'b0'), ('valid', 'b1'), ('test', 'c0')]
    for i, (split, stem) in enumerate(files):
        image(src / 'data' / split / f'{stem}.jpg', i=i)
    coco_json(src / 'labels.json', [(i, f'{stem}.jpg', 64, 48) for i, (_, stem) in enumerate(files)],
              [(i, i, 1, [8, 6, 32, 24], 0) for i in range(len(files))], [(1, 'cat')])
    rc, dest, _ = run(src, tmp_path / 'out')
    out = capsys.readouterr().out
    assert rc == 0, out
    assert 'splits: train: folder data/train (6 images); val: folder data/valid (2 images); test: folder data/' in out
    assert splits_of(dest) == {'train': [f'a{i}' for i in range(6)], 'val': ['b0', 'b1'], 'test': ['c0']}


def test_yolo_nested_split_folders_keep_their_splits(tmp_path, capsys):
    src = tmp_path / 'src'
    for i in range(8):
        yolo_pair(src / 'train_zip' / 'train', f't{i}', i)
    for i in range(2):
        yolo_pair(src / 'valid_zip' / 'Validation', f'v{i}', i)
    yolo_pair(src / 'test_zip' / 'test', 'e0')
    (src / 'classes.txt').write_text('cat\ndog\n')
    rc, dest, data = run(src, tmp_path / 'out')
    out = capsys.readouterr().out
    assert rc == 0, out
    assert ('train: folder train_zip/train (8 images); val: folder valid_zip/Validation (2 images); '
            'test: folder test_zip/test (1 images)') in data.read_text()
    assert splits_of(dest) == {'train': [f't{i}' for i in range(8)], 'val': ['v0', 'v1'], 'test': ['e0']}


def test_yolo_in_a_training_data_folder_is_split_by_seed(tmp_path, capsys):
    src = tmp_path / 'src'
    for i in range(10):
        yolo_pair(src / 'training_data', f't{i}', i)
    rc, dest, _ = run(src, tmp_path / 'out', '--names', 'cat,dog')
    assert rc == 0 and 'seeded 0.7/0.2/0.1 split' in capsys.readouterr().out
    assert sum(len(v) for v in splits_of(dest).values()) == 10 and len(splits_of(dest)['test']) == 1


def test_images_all_in_test_folders_are_split_by_seed(tmp_path, capsys):
    src = tmp_path / 'src'
    for i in range(10):
        voc_pair(src / 'test', f'e{i}', i)
    rc, dest, _ = run(src, tmp_path / 'out')
    out, err = capsys.readouterr()
    assert rc == 0 and 'every image is in a folder named test: with nothing to train on' in err
    assert 'seeded 0.7/0.2/0.1 split (seed 0) (the source has no splits)' in out
    assert {k: len(v) for k, v in splits_of(dest).items()} == {'train': 7, 'val': 2, 'test': 1}
