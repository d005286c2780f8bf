"""Recorded DTLS sessions from OpenSSL 3.0, shared by the DTLS tests (data, not a test module).

See tests/test_dtls_vectors.py for how they were recorded and what they exercise.
"""
from __future__ import annotations

import base64
import zlib

PSK = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
FRAG_CLIENT_RANDOM = "b2e8e2d60619ee8fe5fea2666604af793ed895c869e3ab96ed26a582940a36f5"
FRAG_MASTER = "9de2f196ebb367d728109fb20495ba99c792b1a2cd2a1248a1ba0217bfb05c46955c25d238b26aecbd1a362a4182a15b"
RESUMED = {
    "res12": ("2C6EDDBC7802267F9A5D354F09924D6F6DB6EB785564265DD814B272B85C1D82",
              "59AE2A7E27A3F20CE1BDF408CBC82012A22588544CBDE87A79465054CECE620BCFC05721094643A9C09491CF595E1A38"),
    "res10": ("87D9CEEA6B112ECEFD5ABDF0EAB1F46FFC36E8BE2B744CF3FD4F7CA026F12EE5",
              "8CB10DC2462292E19855BB6D212062AE139D4531D38EB4739407ABC553B95B51FE1C4EA72D20596A9CAA8AF44A554330"),
}

VECTORS = {
    "gcm_ems": (
        "eNpLZmgU+/efAQZKGBkYMqDsjH9/N3aoHDf88/no3vkPFI3ENgmffPrkwvvXCyxeT7jd4fz1EQdQFQvDCob/QF1WDMpAnhgQiwMx"
        "L4MWgwYLMyszGzMHOwcHBycHFwc3BwsHKwcbCyMrIxsjMzMzIzMTCxMrExtTMYMBshuUmSFmgID4v/8iCunLU345Fa9m2Oix7n7q"
        "nj8XgoTakhmmIrQwMnQAHVADpEGghghnYzWTOl5JF/v3F+4uRyYGBlOou0z//X1Zpsa9JPsot+j5asFMTWsmhxdnXrvuTup6vc8w"
        "pflmchcD0AEMvEAnAHUoQ6xHmMbEwMMHocEgmSETWU5QgIGBFSrHysBcUJwtApdlZmBkBKllhPINLpdyRoW8OWWoqZSmcqJqm6HQ"
        "lKPPTzsJXTO9pjfvZXSrsWZwtJ0pT2yk0fabrHxXf4kUM5wXQzLtEAsDwzYgDQLbGBhkFBg2rP628kj2zbcuvqvnbLs076qCa/fZ"
        "m9+dNGYnch5fOikwWmb3nSnGB2vU6+dPEFuQ9pKxd+6OTJ/Vn8MPPXjj09S602Q267K3ul9ecXHX5ggvXLPd3yvb4+DfS0Ur5tzf"
        "/n+3+uN+VoVve5czbe2pCr57h109cINQ772538Nanl3N/8L7zk9q6dU6s3nagUmbjh5cv3/fneCXNxQaG2Sszr5i/Zt5dH1Bn59X"
        "0Ja2yV9aa17oPTy9IuVY9uZiBm9E+LCgh4/SzLKIBfy80Xs+6C6McpOqMNHq77od9r9UZO/GZdNz/IU++t2IEZOdn1imNjlvT3/B"
        "6mQGU3G4fkYGDWj4Gs18FMdgccbo/IqAC4xMgU3ODzqPHax+snDNH2Uf5dAEi3XFDObI+rSg9sbMXcZVcXFv0dJlxZpLzdiPuO8Q"
        "dPhpqeLyWM9pJ0NPdtGTMAMUG5ngNhqLvvs5Jy/T8PptPtugvavmzDA54dsjHOF469jyeGOdaRcikhnUReH6mBmkoPpM5GTehTp3"
        "zWUL55i47sf7zT7iJ4qRVTIxSEHdFlsasP++87v8xMcKjctM7n8+orMCAIqSbF8="
    ),
    "cbc_etm": (
        "eNpLZmgU+/efAQZKGBkYMqDsjH9/C+40xwmZ1cuHXivcvTRqRWzrZuMnZnk6x6bJqq5qEy5kBqpiYehh+A/UZcWgDOSJAbE4EPMy"
        "aDFosDCzMrMxc7BzcHBwcnBxcHOwcLBysLEwsjKyMTIzMzMyM7EwsTKxMRUzGCC7QZkZYgYIiP/7L+LotuGf589KG4Zp85P/2exw"
        "9/h0YWEyw1SEFkaGDqADaoA0CNQQ4WysZlLHK9li//7C3eXKxMBgCXWX5b+/JTP8AzzVr3WbXbj5MynoZfSD9z3epws94ssPrgl+"
        "JnHanAHoAAZBoBOAOpCcgDCRiYGHD0KDQTJDLbKcoAADAytUjpWBuaA4WwQuy8zAyAhSywjlu6w4sXq5gstL89Tz6zPl/nT1VTTx"
        "zPMuX86zPDpw9mP1NUcq8zmON+hJ8F4226Nz6VxWe1nMNuVHzfJfBJOf5rumdXhNlVHVLmY4L4ZkwyEWBoZtDMxg3jYGBhkFhg18"
        "61NTTF13cLIf4ftbfHlFQeOUKLv5RksaqtUkPKbcv/lEPU2hXmb22dlshQ6ipz+cZ5yQMW/fXAV+rcuuJs7Mb5Oco2/s3TzlgOWb"
        "gGt396T2cRsXzn7clObB8WXpjaypN+Z9nbi38U/Duj+2kRvepdfqZMmsn7nAaENyRZcGc6P3Znv7N9WnklzuL/rD3aNRfdf3lOue"
        "uKVm8VeEd+REvLYSmsS5a+3+NTvtqhv/X3vpfCvwxd59Uu7FDPGIMGNBD7P0oxEPWmsiFzdUOW2RWTevb33ys9tTlzeENeQkTWYM"
        "lHZvr1q5dOfvKX2XZlnXK+sYCb+5do6x6uehd6mnC3Y6vw3jWfLmjkYyQ6A43ExGBhcOqzfu+3ruHiqbfndqyP3EoGIunYS/1fZK"
        "uziZLBYdXfk6+Cn38klM6/foLmkJtw5zvOTTxvgz9mHG2oVJxUuTDbVfzvuS51CMZmbb/GJP46cvdl7KuGiSttTff9Mzl8kiQQqP"
        "PvUErWx8ftH2zQrJ4Kc39AujLlTyreZ0bn4S6fPB3ThDZc/bgzff20VN4dx/0RLFnUwMLgwLI4we6lq/3KzLtW5m2lqhiYcjDqts"
        "ze1sDjW1bwricJ4dfPLggX9aqx+2diuuC9JpCGlkTVl0ZvN12+n/lK2fHnlyOuB+UzKDoyjcTGYGkyLx9y/Fdk432dqgv3RLRGlr"
        "8g0eke6f2y7eeBDtu2yhyozap69KO58uny7AMvep8O+bm34VTd5bjGwGE4PJdylZRq/SzkqZBwoGwZGpErcqJnuLidl0XzmrmL3R"
        "QkkmQGrK/EvyNjPu32o2bDm+Pki7OKMAAI72vEM="
    ),
    "cbc384_noetm": (
        "eNpLZqgV+/efAQYKGBkYUqDslH9/G6ZkfYmZo/vxT6OuVP7Onu+PnK4n5qRsWibwx33lsvlPA4GqWBjWM/wH6jJjUAbyxIGYl0GL"
        "QYOFmZWZjZmDnYODg5ODi4Obg4WDlYONhZGVkY2RmZmZkZmJhYmViY2pmMEA2X5lZogZICD+77/I3qvtux+9MNxueetqS6K1pNWd"
        "GLZjyQwTEVoYGVqAllcAaRCoIMLJWM2k3BvpYv/+wt3kyMTAYAp1k+m/v90yqzMuufXXJ+4r5mKdsrnyZeRkxehPGgb/PyheS24U"
        "z2MAWs7AC7QeqANqPcI0JgYePggNBskMM5HlBAUYGFihcqwMzAXF2SJwWWYGRkaQWkYoP+H/64DPjf8/W99teTRd4IBYo+/CneEC"
        "v5+s5louXpv1a93Hn68Sz65Wv5Le9uDi70xvo+sn7N5k/vros3n+n7PM0cGVV3+edBXcmcmXu3jVvA8HV7DsKf8d6iTWuklg1Sa1"
        "9XozLXOKGc6LIdl+iIWBYRuQBoFtDAwyCgwbpuVG6QtIfX85dem915F8UjcC+SSW35A2WGznY7Cn9ZSRePhznak+CdWaBm/Xz5M+"
        "dazmxzGJF5tlU32Xcxs6vVL8eaJnyvOynYw6XRa3Jyme3yoWm7Dm4bnNxWoqorueP0/unfZe3NaH4ci6g6cZvm+sil5xZtWK/x09"
        "CzYrpU6oS3pdN/tQ3mEhMaurC2xaeJtKJpiLyfyeam9ysvqrfGZ4jvXb9wzKDi131ugce+BbllrRd7oya+KFYoZqRHiyoIfn5glb"
        "7h5i53QS/50c4/b92MeGjEghZR/GSf6VCisaQvS79xQ4OzIu5Fh7UI9hGcPN5HfprwpjjPOvbl79+Uz6u4+Z8qsSbe/+1+e+deRm"
        "INOMGyL+O9VyTlb6zBMrfGPA+eWThnkyQ6443D5GhoSLU/4fPHu2917nDjUVF+vbi742Bq9U35tS8bju5a40nZXhhRoH5x5QmPLd"
        "Z9aJw073jgt9Oegk8/Nj5ZwK2bBms+N6r/TYZuzvbSq+5hi7ZlbAFH+ZL4xWr0ty1ebOn7JOOv2Xd1sxmn23zDYd+eL35OWH2e/e"
        "d626HHZ7h+e0unTpr/O+u27ZWr7TdHv/+WpL3dbDFv+nHWHkD29K/TqF6RnLEoflp17ozvr6oPuJvHjDxS3qKuwbY2W130Quelj1"
        "jM84KWJF20yB7tzZ9zRQ/MfEkNC1LP8YW0ry0t4V50NDqr8ws6zYPtE+Iq3DwdYqc3a/6WS+tS/iOKYfWyYibHDuNK+A7NTjh6Xt"
        "rnVbczBw7G+9FBqfP6c6b/9X5RdqKprrf6bUbC9N+69qJ2P7eq7i1STfKsFlyQyxonD7mBkCkjgWeev9YlmzmyH45ikn78dXWdq/"
        "Kxp0/WZ2vPp5gt6RRdF3+ve8kOXPr/q0ourt1/k5TUGdwUs17xc4CaxdWdbBGb6083sq/70F2ZJCmQ5sJTXdxcjmMzEEtNvozNmW"
        "vdFNe5ct26wq13cb6hfP7N/Gv5HRdcqyIreV23v3abdtmZ3wdNab92eaMzc8K7hSvEc/IuyQqgH3lPp93GWVa8Sf3IiXmrds2dTq"
        "y0uZXwAAna4ssA=="
    ),
    "chacha": (
        "eNpLZmgU+/efAQZKGBkYMqDsjH9/te8euO+WV11fZHNe7UiWdkDrOeEvUzbuvxHN+2Fi0a7JBkBVLGdWM/wH6rJiUAbyxIBYHIh5"
        "GbQYNFiYWZnZmDnYOTg4ODm4OLg5WDhYOdhYGFkZ2RiZmZkZmZlYmFiZ2JiKGQyQ3aDMDDEDBMT//RdZE/So9qr49XuhJlECyt9m"
        "ub0O9IxKZpiK0MLI0AF0QA2QBoEaIpyN1UzqeCVd7N9fuLscmRgYTKHuMv33V7X2YNK9zQ+n511c/GVmW4lE83/nKeKHLyQeWODW"
        "/aD3zykGoAMYeIFOAOpQhliPMI2JgYcPQoNBMkMispygAAMDK1SOlYG5oDhbBC7LzMDICFLLCOVr+Li39ASfvrbR9+khrvWfH//Y"
        "ZJzP/W2e7fncd9pes6s3vL+Za7Rs66yedcUM58WQTDnEwsCwDUiDwDYGBhkFhg3qxXIfCyK2+/OvDPye3v6cRbz4UmN64fe20p8/"
        "qgTdhBYcN9xs0lK4ly/NYOKxObyWjH2vFL9XCKzpebPIaC5HO1f43pY5Zms4fm51PDNZ7v4phr+G9yfu0LQTObrPpYxpO0eHyr0H"
        "v6XkLuoalZ6a/u7J9Xh37cMBEjeav/MV1MuYL+H+6Py4w/+A5bvTLydfybHnDl/hc3rzde7sD2Vb57wwFlzr4jPT29FfkjdRny04"
        "LyPP52H5jGIGZ0S4sKCHS8Hd04+f6F2pkTp1sPAjt4NF//GbIcF2aiIl83eGstzgeSS5Kd7r/cdfxckMuuJwfYwMCmH/c53WrApf"
        "tDqN8XSGy4WbD6e6Xt27KP3UzyDLq0WeSqeLGfSR1Stx2e9QW7LzXjqHwQXj9bqHDlyJC3L0cO1xuCB96U6XXS5z9GwUG5gYFO7z"
        "rF5jv2un7P/vta9Fm2NsbS9PSjvF/cNm8w939rn3nl5MZpAXhatnZhBSO7AhPXvdscdCIYL/1O7Mn6DuWIysgolBqPLY7Y68v1JC"
        "xzI7rnTeZhJlkQcABy9SJA=="
    ),
    "dtls10": (
        "eNpLZggW+/efAQbcGBkYrKBsq3//3x9ROZQ1Q4JV6fzlVcZHuX+6am51yqorTkgzl9ruwniuD6iKhaGX4T9QFw+DMpAnBsTiDAzF"
        "DAbIpiozg0XBQPzffxF+t3kfP5dWT+BbdkjaUSTpVG7xjJvJDOkILYwMUUAj/YA0CPgR4RCsZuJyXDayTa5MDAyWUJss//032b45"
        "O+kTUyenPVdfW5FzuRCz4pPtj1u1Z9/pOvFAdn0FA9BIBkGgoUAdSIYiTGRi4OGD0GCQzFCLLCcowMDACpVjZWAuKM4WgcsyMzAy"
        "gtQyQvkutYYLBZylzhhekLyfdzp5yvb9rr9r9qq8uOz1v8CQl+PXPuveitlGYiwFkdr3pnifa+5nC7msXSS/54jSlOp/k5mK1D+2"
        "pyoUM5wXQ7LhEAsDwzYgDQLbGBhkFBg2ODneF76jybTcaHECv7xxXZvFDPZL/kcCJk6Ye3BVupjjZ/krL24Lnv4pGhmnc6158wP+"
        "0Kdrw5uVqmpX1hquea/Nvcv0nqTjlo1Wh5Tn92X867/6pThOdmoPZ/w7v3IeZ5XZjotXZXNsMJ1gq9Q4VWVyqHVZy2oh1zS2jRpa"
        "DnN17qaVnqo8OMMlMzyuK+p30q2AOfWmijUW+arCdoE5S269/uO02jv5Q/qV3Dc1/2O3fas1dbwdcayYIR4RZizoYeY8NXzCTMV9"
        "vnWu5XzJj9/m/WIpP7RhdkDUipBLpjqGnglWkocmiq/RbE8vPitxOlb0O2O6hErRkTdxhTzyi3g3PLs+Z+8Sm2SGQHG4mYwMLlX8"
        "l/yTGuI4O5I0hb43H92d4POjZOfEjCh1r5OqydWHO667zrv18MIeG/M9IV2LTSt+6pXHRvC+L3eKWnbFJEv0WvMFXW2fYjQzLfdP"
        "uPHn8mGXr01OLtmljp1rJXcqnVW+uSG2UMNkfcb7J/yr7XeGPxdv/jybz1N9dWF3/Jp7OduXP+Re/nkGP6fpTzOdG6UTUdzJxOBi"
        "On+N0cQDsXfXJy8WOS8dduhEjH3QrtR993T7j3q0Ho9eKrB2+/qAJfseFFS4LvvK2X/xx0yO4vz8192Xd0u3p7s8m/900uQnyQyO"
        "onAzmRlMvqiaVWk/KfY8Exgjs7zR7r5Lt6FpX6Fxxyd7+b5pc8/wtV8NaRS2q1ANz58+N9Yq4sllJ6PCYmQzmBhMQowWORQ/PSOi"
        "zX9DTGz3T86zNYs7D88P+aN45ljE4mdB5fL/HyhNvZbhqflKunjWTEWzBeVP7gIAGgyrQQ=="
    ),
    "ccm": (
        "eNpLZmgU+/efAQZKGBkYMqDsjH9/GS3S+eVZ/jc99XT8YvN4sUNsSBSjOb/qt99eDgUb2xqOAFWxHFjC8B+oy4pBGcgTA2JxIOZl"
        "0GLQYGFmZWZj5mDn4ODg5ODi4OZg4WDlYGNhZGVkY2RmZmZkZmJhYmViYypmMEB2gzIzxAwQEP/3X+SxR2z9ucRTyaJSPwMic/Oy"
        "Y2q8GZMZpiK0MDJ0AB1QA6RBoIYIZ2M1kzpeSRf79xfuLkcmBgZTqLtM//19xB+ru8I9b8Eilj1yB9fV3Uo/xrXPqGnrRw3noK51"
        "b8L/MQAdwMALdAJQhzLEeoRpTAw8fBAaDJIZMpHlBAUYGFihcqwMzAXF2SJwWWYGRkaQWkYo3wDGit2desuk+pqrcL+6rYW64dZa"
        "YeNXG8P657V0xusnGrEsPyF1wP6krLt+McN5MSTTDrEwMGwD0iCwjYFBRoFhw3JF+xm/Mo6aFlQ6ugj+4b/FPNPbJ+NWyusVqXt8"
        "5ZVtHPa+8wniy+t1+s0eoDBtyeX33191KO+485dl/cmsje5dOQFqZ9Obdq0t/P4+lHPl7OQcGxORG2oibXFHwqSn1ETvzaq5sN6h"
        "sqr5QHTI0eN2sz9Ol/t16HJV2wqnSVdCkpNWOBx98zf7nUvklIfcjZazH7N/+PnvWsH+tZp7DkezZh02UZ9/dYav+Frz958b6j8s"
        "idp7/vWZzcUM3ojwYcEVPmVCvFf016jPnZkaanOuJDQlVqHcaqWJyhwRdqHdjsHvTi9dq/yNx1LncjGDuThcPyMwvUBZ073VzNdG"
        "rLwa6rzKa/+LbOv/F3adXd0o6yUrVLQhfIsvS51sMoMpsk4NGCusX6XwnMFOM4fmgvL+ubNzXNJuB7eY2YdNMg5rPsDQrIGijwmu"
        "j+le2covXFMT3tXxnDPqKo95cy2549W9tzbak2dfcbC98HNHMoO6KFwfM4MUjLXXx5J9GnP36r9maRYhQmcrGYF+QlLJBFfJdOjP"
        "wh1MaV8frovv7vNUvGrzYwkASTpCUQ=="
    ),
    "frag": (
        "eNrNVHs4lGkfft73nRmvGYdkGJQxTJgIL3Ion5KIDkRWhUXTyKFPOczIosQ4NflQKm0lohWGToi12sx2oeRQakkHOXWQc7WST8a+"
        "olTX/vH9+f2u67lmfs889/3c9z2/6+GAJkXxNPhcIgiAsrnvZeKpkr6eNpLycNoLca6vL+FyxKr2E7cDeosyhrTy+MfJpmP4KXPR"
        "MhEGshsLGwsahSJdkQHIEi0RscC/RUyRNvATkUVUsEIkKZIHxuAsyASW4F/ABBiAafymLYACCAiAYEAGUvhSBTRAB8pACTBxZkV8"
        "0fAlDXQAi4AQERKCSqAoKomSUQpKQIkoiQARIRKEIAiEwASYCJNgLsC+9sNEZjlmiiaepk47+BdNT3K6FHvLzR3T7SbT18RbcED3"
        "PAQCf+LCbuOfM3X7f4jgHzn/72KBeIriqS8e18MAv3HWo6V4qlvebaCzC2nQ99AkS+ZzY96nP1188EOiotEFowz0rlk7wK0ABVwa"
        "jvgsjTkrY54VhuQoANED8KcriADRAYg2xkeYGB+mnENgCIap3KkMuQjCVh/2fdrTY2eO26loH36ASZMkdRLtE8elIYhCBJieoTwm"
        "R0JcCWQpMpvjGxgUzghk7zRUxKgzm4iU9PwmY+0ajE6TNjI1NDQyxUyNjE2M3PHWDG/N5lrM4J/plDDFWTrZfcF79Wd/0Oft4vIw"
        "PqTxtaQZJ3xIFuD7ZJgPQWCYTg/a8YTs3LXeWLKa4PwshaO7qP6jbcYbCR/lR5Hupz9UXfWyOSSx6VaLQOGb2BHIby4gnBPy2Fod"
        "iVTucVzJ0L7yR29i8rXnMVp7tB3uTJgONHjX2Y64Go/iA0XmBSyUCNAovu3u41fr2bIlWO9MgMPCkrUfrkV30VN0aY099xLqC5ZW"
        "1JTXuFZvSrJPLrl0/uVmwyyXsv9YXfc4sEXoIYwotW9pmDyhKGQLOmJQ7cXRKoVtTZJGtzTRi5QXP6qdsu8MmewSLdVlw8rryFpJ"
        "qF6OlP7TdknVgbDfjMmlPUEWTBdaY6vtovTIQV4tes595IJsVhy75s1Gtf6y1lTdQy27J5df8B19wjOBPGAEn5HzKzAzjIGnqypH"
        "UMZo/O8TTiLULQQQJj9zQpMghZFJqC4JIhIlEOi7WUBm8t6QS1V67HA9hmXyevnIqjtFKuzQKhfdjaXL2gaHJ91W9DguXe4nr69W"
        "rmD9Fn5ms8GKOkX+JnYCeDQXO7wDgCasrta8tP6lWF4/ebDJXT3rZnX9sGuGWk/OQNW2ceHxS0f71P2XlNShiYtC44ObQ2jLQv2c"
        "2v7K2ZX9VzD7WBm3elp+CdfG8VV23fXaU4nv+VGeaUG0E+lRZ32P0FfICKx/3tayyTDp3rtteVY1GvtK4gJjjzW4Rh55vtZ7YtA+"
        "THDIddSzflQVcfL2QaIf3QiphrXtxvN+BccSJ20rD/vk9slkjn34SfSbR2t61raQ3DBrzQi/DZf3jWntbrFb2e6u0eTNjjLWV3hi"
        "xDQ+z9eVnXdJBLFSAGIB5FMXhgBVxhmB3PoQKnun15EKWoYlLVx47jpjZbSDy6VKrOVHMScMJUDA2esi74jdtOsrA++7zbuuNL7b"
        "Hlkr1LxdSs/coaxD4o2PC0Y+2ARVxCSNpJ78syNMQW6V8I5npGW4U3a0iMn0iC94Diky40/dXLbxrv9JLngxL4gEqj8LCgOg9LDw"
        "wfZSb99OUxu+33thrOru9vKzqneuSQc9HuXAjzsrxw9YxpnErto/UdocPFq/eq3N/jDWm25ZF25U0gPpMWqCuCx6jObpxvrvwufm"
        "fab2rVcOWa57qNRvjv0uJ5PWtIU1/Kyg6md2wyOB8Lj6+oSi18WgXHpoVzK9dLeDS613IZpbWbIzOrAjtUhNPoVicj/HzmJP9+b+"
        "Af+73kyrAMY1ZDrGmE1cEJTa3Cu7JiR3b+iNX/fOe5EAUjKzo/SpOCDhq2cP6C0AQH322QPqjCHnYA6v5J3N2+qs1B9IeXv7V92f"
        "6HojeTLlge8yVwtVaer8ewAgaIYHmusxDw2ijXWAXawndlGheWuEVN7uKKv3tTqV4QX+gxrNQyMlf/SMy5TqFls4bR9JfthB40Iq"
        "8zpQcBOXV44PwkyVA7CYAa6Y67+g2hrEHqUfdb5sv6DiQP7S+pK8qwHVv6xR6GZFLjlIM01jDhUKql5XPJaL5LtpFcb9lMcrXn29"
        "jZa5USK/4NT+lZgPlbuE0tEpfkFmYPdXp13KLyi69LamY1DGvThcr9woq9WtW0OtbtIy+2WE0qNz41NOhv06eue0UpJi64c7a9fk"
        "8PYNbs82QI1forn5K3dae07eX9TO+qE1u0/lqv8vm4XpmglNxa/07PavvWE54TofjuT34QjGuL0VZs6nax6r+68blD8WvkE/JY1F"
        "YbXcjIq7/PutjxaqLf6XvQrqb94RSrIrx05zgRntCx4COnP4M5mKwfQj+aGCLEa47aZ8x4S8pXqhvImDLU8osX5B0liFHJUDTL5G"
        "sub+Fn5qYpvSx4b+oqGOq2WMTPHB5Nd29paTd2Vt3vT6jwbeI3yDg7/g4pw2wtmCGt5D0QZuhiyFdSL6KT2JYB3i5YUJ3eJ3+Axx"
        "gLbCFxwCVOZw8VWGtvl+RHNRwWqD5W8zHZW3r+d+fRIGKnOeMvWtOXsqtplKMYl+/gWBdax2178BHfl95g=="
    ),
    "res12": (
        "eNpLZpgr9u8/AwxMYGRgaIGyW/79dZxV7XTkrdqzK9/mMe+5Y7FhxmLG7gXKPNUz5Zrf/3TYuk9BJ+/ungomtfpZsab+nJN883O3"
        "va4ITVGLvSGyqWhHjGwTAwMLgynDf6CpZgxiQDPFgZiXQYtBg4WZlZmNmYOdg4ODk4OLg5uDhYOVg42FkZWRjZGZmZmRmYmFiZWJ"
        "jamYwQDZfcrMEDNAQPzff5HdG1larX25b3qyPV8tnu6gcSbm9v9kho0ILYwMS4CWzwDSIDCDCl7Caifl3jwr9u8v3M2JTAwMoVA3"
        "h/77y/VM4NkbXa6LWSEXQ15uu8SaI3EzrDDaSPy4weXTb44lBhGOBlOge4DOA5oIdZ4I3DYmBkZGkN2MUL6LSc+pz2farQwkpf1q"
        "tJYU7zrQP/0b043Nu9Kny6/1tfF75HKQ9dmxc51aDU3R3/SVeLe+DDxvt9/sue0xLZfmgPVfHl+QavVPZojHY8PeJTPmysunP7x1"
        "/M8Lng9xpo9MQss/KEy/WP+zUWjhGl/ueM7azMvPhB5uzEjxk5pRV8qx5FeQWa9BstGP+JP9QhJnfOU2RiYzOIrDzWRkMFmgxmE9"
        "5UzBhncT2L0Kc044rG+KvCKxeKtGoI+B6H+9vPK4Zw+uJOmsX/9N0kU4UaFAxOLhsyagGaJwM5gYTB4uFbhgNblKPWx+7sFT/JLz"
        "96hXtLzersJaeanDc1nN0Rcz+F/Itk++e0+v8od3ieCRo2vNwo4VI5sBdAfDvRPMzWu3Zkd92TZb/bzYy+thHTt+Bby8q7rA8bXp"
        "6gIb7dDU7zMu9S0p+af22+peyv7NN16/AwAx7TSl"
    ),
    "res10": (
        "eNpLZsgX+/efAQaSGBkYwqDssH//Z0Wt0VXm5voyITz+1Fb1KTntPWnNoYcFdM8veyk2f7u1t0L7zXOvsgX1zv2N2vvh1cYv+X/M"
        "XuzTLvH5/Ne/ZoHaR72nDAwsDPoM/4GmcjCIAc0UZ2AoZjBAtlGZGSwKBuL//oskCIU/r1U1ql5mP/GTI1c/a4n5+dnJDM0ILYwM"
        "ZUDjsoA0CGRRwZFY7cTm8LPIrkhkYmAIhboi9N//rbyXv1YbTE5/eN3paLnHFsYrdjbua0r/zFY/ESH4h1FDh3BQ6TMw8AItBJoI"
        "tVAEbhsTAyMjyG5GKN9F+nFZv52x43wh32+HNSKrRM+aRQQfTNkW0LLp0rKX7AE3t6ctePTi4T/371Zscnncn0xKpPU5pq+oZOoS"
        "5Xse8yD2RuEdpUfJDPF4bOBUqP8a6fbkX1b7vrpE2Wh+zl4v73gXA6WyViMdr9T1PxkXPVq6aZqYz5ma1J9bU+WL1Tn8zde1ZRss"
        "+/hZfN9Ti4Ve3x5aJTM4isPNZGQwefA2vXHHIXvzg90+R0sUtxTyvF/+RrY64ILvnu/HIiUbbHd/OsIyOTNMx/eUXePnjqQzf5fI"
        "bQWaIQo3g4nBZIvkRzWPFS+a34t0xPmtyrUXev5tw8QnE2Wmr9oUZ3BeMTlmZrTfiUW/ZpxgChFynLFim4xNX28xshlAd/ikRhR5"
        "7XW3UViaVH2EQZD303Tmk8zTbE5N4L5/4W6eB0fwAU3DadFnr/efm5RtM5Gh/LRF9VMARHw0Vg=="
    ),
}

PSK_VECTORS = {
    # name: (version, suite name, extended master secret, encrypt-then-MAC)
    "gcm_ems": (0xFEFD, "TLS_PSK_WITH_AES_128_GCM_SHA256", True, False),
    "cbc_etm": (0xFEFD, "TLS_PSK_WITH_AES_128_CBC_SHA", True, True),
    "cbc384_noetm": (0xFEFD, "TLS_PSK_WITH_AES_256_CBC_SHA384", True, False),
    "chacha": (0xFEFD, "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256", True, False),
    "dtls10": (0xFEFF, "TLS_PSK_WITH_AES_256_CBC_SHA", True, True),
    "ccm": (0xFEFD, "TLS_PSK_WITH_AES_128_CCM", True, False),
}
CLIENT_TEXT = [b"client data one\n", b"client data two\n"]
SERVER_TEXT = [b"server says hello\n"]


def datagrams(name: str) -> list[tuple[str, bytes]]:
    raw = zlib.decompress(base64.b64decode("".join(VECTORS[name])))
    out, pos = [], 0
    while pos < len(raw):
        d, n = raw[pos:pos + 1], int.from_bytes(raw[pos + 1:pos + 3], "big")
        out.append(("c2s" if d == b"c" else "s2c", raw[pos + 3:pos + 3 + n]))
        pos += 3 + n
    return out
